"""The job's cost and timeline, from figures given by hand: every line checked against its own
arithmetic, and a whole local job's manifest against its recorded figures."""

from __future__ import annotations

import json

import pytest

from vtp import contract
from vtp.core.cost import PRICES, JobCost, job_cost
from vtp.core.manifest import EncodeFigures, RenditionEntry, StageFigures, Stages, TimelineBar

US = PRICES["us-east-1"]


def rendition(name: str, width: int, height: int, duration_s: float = 120.0) -> RenditionEntry:
    return RenditionEntry(name, width, height, "h264", "avc1.64001f", 1000, 900.0, 1500.0, 3000, duration_s,
                          10_000_000, 30, f"{name}/playlist.m3u8")


RENDITIONS = (rendition("1080p", 1920, 1080), rendition("720p", 1280, 720), rendition("360p", 640, 360))
SPLIT = StageFigures(wall_s=2.0, cpu_s=1.5, requests=12, memory_mb=1769)
CHUNKS = StageFigures(wall_s=100.0, cpu_s=250.0, bytes_written=60_000_000, requests=600, objects_written=450,
                      memory_mb=3008)
MERGE = StageFigures(wall_s=0.5, cpu_s=0.4, bytes_written=40_000, requests=20, objects_written=9, memory_mb=1024)
STAGES = Stages(split=SPLIT, encode=EncodeFigures(10, CHUNKS, CHUNKS, 12.0), merge=MERGE, total_s=16.0)
BARS = (
    TimelineBar("split", "split", 0.0, 2.0),
    *(TimelineBar("encode", f"chunk {i}", 2.0, 12.0, chunk=i, attempt=1 if i == 3 else 0, memory_mb=3008)
      for i in range(10)),
    TimelineBar("merge", "merge", 14.0, 14.5),
)


def lines_of(cost: JobCost) -> dict[str, float]:
    return {line.item: line.quantity for line in cost.lines}


def test_an_aws_job_is_priced_from_its_own_figures():
    cost = job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0,
                    stored_bytes=60_040_000, report_objects=3, region="us-east-1")
    q = lines_of(cost)
    assert q["Lambda splitter"] == pytest.approx(2.0 * 1769 / 1024)
    assert q["Lambda encoders"] == pytest.approx(100.0 * 3008 / 1024)
    assert q["Lambda merger"] == pytest.approx(0.5 * 1024 / 1024)
    assert q["Lambda requests"] == 1 + 11 + 1  # splitter, ten encoders and one retry, merger
    assert q["Step Functions"] == 6 + 11  # the ladder and rework choices, the map, merge, publish, succeed; the items
    # PUTs: the split's documents (2), the chunks' objects, one fact file per chunk, the merger's
    # documents, the manifest, the report's three files.
    assert q["S3 PUT requests"] == 2 + 450 + 10 + 9 + 1 + 3
    # GETs: every read request (requests less the PUTs among them) and job.json per chunk.
    assert q["S3 GET requests"] == 12 + (600 - 450) + (20 - 9) + 10
    assert q["S3 storage, one month"] == pytest.approx(0.06004)
    total = sum(line.quantity * line.unit_price for line in cost.lines)
    assert cost.total_usd == pytest.approx(total)
    assert cost.total_usd == pytest.approx(
        (2.0 * 1769 + 100.0 * 3008 + 0.5 * 1024) / 1024 * US.lambda_gb_s + 13 * US.lambda_request
        + 17 * US.sfn_transition + 475 * US.s3_put + 183 * US.s3_get + 0.06004 * US.s3_gb_month
        + 13 * US.dynamodb_write + US.eventbridge_event
    )
    assert cost.cpu_s is None and cost.where == "aws" and cost.price_date


def test_mediaconvert_is_priced_per_output_minute_by_resolution_and_frame_rate():
    cost = job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0, stored_bytes=0)
    # Two minutes each: 1080p and 720p are HD (x2), 360p SD (x1).
    assert cost.mediaconvert_usd == pytest.approx(2 * US.mediaconvert_minute * (2 + 2 + 1))
    fast = job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=50.0, stored_bytes=0)
    assert fast.mediaconvert_usd == pytest.approx(2 * cost.mediaconvert_usd)
    short = job_cost(where="aws", stages=STAGES, bars=BARS, frame_rate=30.0, stored_bytes=0,
                     renditions=(rendition("360p", 640, 360, duration_s=3.0),))
    assert short.mediaconvert_usd == pytest.approx(10 / 60 * US.mediaconvert_minute), "10 s at least"
    assert "360p" in short.mediaconvert_basis


def test_a_local_job_reports_cpu_seconds_and_estimates_lambda_from_them():
    cost = job_cost(where="local", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0, stored_bytes=0)
    assert cost.where == "local" and cost.cpu_s == pytest.approx(1.5 + 250.0 + 0.4)
    encoders = lines_of(cost)["Lambda encoders"]
    vcpus = contract.DEFAULT_ENCODER_MEMORY_MB / 1769
    assert encoders == pytest.approx(250.0 / vcpus * contract.DEFAULT_ENCODER_MEMORY_MB / 1024)


def test_a_region_without_prices_is_priced_as_us_east_1_saying_so():
    cost = job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0, stored_bytes=0,
                    region="ap-south-9")
    assert cost.region == "us-east-1" and "ap-south-9" in cost.note


def test_the_cost_document_round_trips():
    cost = job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0, stored_bytes=5)
    data = json.loads(json.dumps(cost.to_dict()))
    again = JobCost.from_dict(data)
    assert again.total_usd == pytest.approx(cost.total_usd) and len(again.lines) == len(cost.lines)


def test_a_fitted_ladder_adds_its_analysis_map_and_fit():
    """The analysis map's Lambdas (duration at their memory), the fit, their requests, the map's
    transitions and documents, on top of what the same job costs with a fixed ladder."""
    analysis = StageFigures(wall_s=30.0, cpu_s=40.0, memory_mb=3008)
    fit = StageFigures(wall_s=0.2, cpu_s=0.1, memory_mb=512)
    fitted = Stages(split=SPLIT, encode=EncodeFigures(10, CHUNKS, CHUNKS, 12.0), merge=MERGE, total_s=20.0,
                    analyse=EncodeFigures(10, analysis, analysis, 4.0), fit=fit)
    plain = lines_of(job_cost(where="aws", stages=STAGES, bars=BARS, renditions=RENDITIONS, frame_rate=30.0,
                              stored_bytes=60_040_000, report_objects=3, region="us-east-1"))
    q = lines_of(job_cost(where="aws", stages=fitted, bars=BARS, renditions=RENDITIONS, frame_rate=30.0,
                          stored_bytes=60_040_000, report_objects=3, region="us-east-1"))
    assert q["Lambda ladder analysis"] == pytest.approx(30.0 * 3008 / 1024)
    assert q["Lambda ladder fit"] == pytest.approx(0.2 * 512 / 1024)
    # The analysers, the fit and the rework's plan (which found nothing to encode again).
    assert q["Lambda requests"] == plain["Lambda requests"] + 10 + 1 + 1
    # The map, its items, the fit; PlanRework and its choice.
    assert q["Step Functions"] == plain["Step Functions"] + 10 + 2 + 2
    # The analysis items, their results, job.json; the rework's items.
    assert q["S3 PUT requests"] == plain["S3 PUT requests"] + 10 + 2 + 1
    assert q["Lambda rework encodes"] == 0.0
    assert "Lambda ladder analysis" not in plain
    local = lines_of(job_cost(where="local", stages=fitted, bars=BARS, renditions=RENDITIONS, frame_rate=30.0,
                              stored_bytes=60_040_000, report_objects=3, region="us-east-1"))
    # Locally: the analysis' CPU-seconds over the vCPUs the analyser's memory buys.
    assert local["Lambda ladder analysis"] == pytest.approx(
        40.0 / (contract.ANALYSER_MEMORY_MB / 1769) * contract.ANALYSER_MEMORY_MB / 1024)


def test_a_rework_adds_its_encoder_runs_their_requests_and_documents():
    """Chunk-rungs encoded again: their encoders' duration at their memory, one request and
    one result each, the map's transitions, the segments they wrote again."""
    analysis = StageFigures(wall_s=30.0, cpu_s=40.0, memory_mb=3008)
    fit = StageFigures(wall_s=0.2, cpu_s=0.1, memory_mb=512)
    redo = StageFigures(wall_s=9.0, cpu_s=15.0, requests=20, objects_written=12, memory_mb=3008)
    base = dict(split=SPLIT, encode=EncodeFigures(10, CHUNKS, CHUNKS, 12.0), merge=MERGE, total_s=20.0,
                analyse=EncodeFigures(10, analysis, analysis, 4.0), fit=fit)
    costs = [lines_of(job_cost(where="aws", stages=stages, bars=BARS, renditions=RENDITIONS, frame_rate=30.0,
                               stored_bytes=60_040_000, report_objects=3, region="us-east-1"))
             for stages in (Stages(**base), Stages(**base, rework=EncodeFigures(3, redo, redo, 5.0)))]
    none, three = costs
    memory = max(bar.memory_mb for bar in BARS if bar.stage == "encode") or contract.DEFAULT_ENCODER_MEMORY_MB
    assert three["Lambda rework encodes"] == pytest.approx(9.0 * memory / 1024)
    assert three["Lambda requests"] == none["Lambda requests"] + 3
    assert three["Step Functions"] == none["Step Functions"] + 3 + 1  # the map and its items
    assert three["S3 PUT requests"] == none["S3 PUT requests"] + 12 + 3  # segments again, results
    assert three["S3 GET requests"] == none["S3 GET requests"] + (20 - 12) + 3  # source reads, job.json
