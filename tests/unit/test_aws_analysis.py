"""The fitted ladder on the AWS side, on moto (S3, DynamoDB, Step Functions on 127.0.0.1) with
real ffmpeg and the real scorer: the splitter writes the analysis Map's items, each analyser
(`analyse_chunk`) keeps one chunk's trial points beside job.json, the ladder function
(`fit_ladder`) rewrites job.json with the fitted plan, the encoders pick its rungs and
per-chunk rate factors up from there, the ladder function plans the rework from their facts
(`plan_rework`: rework_chunks.json), the reworking encoders (`rework_chunk`) keep each chunk's
applied facts beside the original ones, and the merger publishes the reworked facts and puts
the analyses in the manifest.

As in test_handlers.py (whose moto fixture this module reuses), Step Functions only records
executions: the tests play the workflow's part (the Choices, the three Maps, FitLadder,
PlanRework)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.checks import check_against_source
from tests.unit import test_handlers
from tests.unit.test_handlers import INPUT, WORK, NoSourceReads, Recording, reject, s3_event
from vtp.aws.pipeline import (
    Buckets, InputError, Invocation, analyse_chunk, encode_chunk, fit_ladder, merge_and_publish, plan_rework,
    rework_chunk, sources_in_event, start_job,
)
from vtp.core import stages
from vtp.core.config import AutoLadder, LadderMode, PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.errors import PipelineError
from vtp.core.plan import ChunkRework, JobPlan, RungRework

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_media" / "big_buck_bunny_720p_16s.mp4"  # 1280x720, 16.4 s, audio
# Chunks of 8 s: two chunks, each analysed (two analysis items); ultrafast keeps the encodes short.
AUTO = PipelineConfig(ladder_mode=LadderMode.AUTO, preset="ultrafast", chunk_s=8.0, auto=AutoLadder(analyse_every=1))

aws = test_handlers.aws  # the moto server fixture (module scope: one server for this module)

pytestmark = [
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
    pytest.mark.timeout(300),
    pytest.mark.skipif(not stages.needs_analysis(AUTO), reason="no quality scorer (ffmpeg-vmaf): no fitted ladder"),
]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fitted:
    job_id: str
    execution_input: dict
    items: list[dict]
    summaries: list[dict]
    stage_after_split: str
    job_before_fit: dict
    fitted: dict
    job_after_fit: bytes
    refit: dict
    job_after_refit: bytes
    results: list[dict]
    stage_after_encode: str
    rework: dict
    rework_items: list[dict]
    rework_summaries: list[dict]
    stage_after_rework_plan: str
    merge_reads: list[str]
    manifest: dict


@pytest.fixture(scope="module")
def fitted(aws, tmp_path_factory) -> Fitted:
    """One job with the fitted ladder, through the splitter, the analysis Map, FitLadder (run
    twice: a retried fit), the encode Map and the merger."""
    key = "uploads/bunny (fitted).mp4"
    put = aws.upload(SAMPLE, key)
    [obj] = sources_in_event(s3_event(INPUT, key, put, SAMPLE.stat().st_size))
    buckets, store = aws.buckets(), aws.store()
    starts: list[dict] = []
    started = start_job(obj, buckets=buckets, store=store, config=AUTO, reject=reject,
                        start_execution=lambda **kwargs: starts.append(kwargs),
                        invocation=Invocation("splitter-1", 1769, True))
    job_id = started["job_id"]
    [start] = starts
    execution_input = start["execution_input"]
    stage_after_split = aws.item(job_id)["stage"]
    job_before_fit = aws.get_json(WORK, f"jobs/{job_id}/job.json")

    # The Choice found analysis items: the analysis Map, one analyser per item.
    items = aws.get_json(WORK, execution_input["analysis_key"])
    summaries = [
        analyse_chunk(job_id, item["chunk"], buckets=buckets, store=store, attempt=0,
                      invocation=Invocation(f"analyser-{item['chunk']['index']}", 3008, True),
                      dispatched_at=_iso(time.time() - 0.25))
        for item in items
    ]
    fitted_summary = fit_ladder(job_id, buckets=buckets, store=store, invocation=Invocation("ladder-1", 512, True))
    job_after_fit = buckets.work.get_bytes(f"jobs/{job_id}/job.json")
    # A retry of FitLadder (say, its answer was lost): the same plan, job.json left as it is.
    refit = fit_ladder(job_id, buckets=buckets, store=store, invocation=Invocation("ladder-2", 512, False))
    job_after_refit = buckets.work.get_bytes(f"jobs/{job_id}/job.json")

    for item in aws.get_json(WORK, execution_input["chunks_key"]):
        encode_chunk(job_id, item["chunk"], buckets=buckets, store=store,
                     invocation=Invocation(f"encoder-{item['chunk']['index']}", 3008, True))
    results = [aws.get_json(WORK, f"jobs/{job_id}/results/chunk_{i:05d}.json") for i in range(len(items))]
    stage_after_encode = aws.item(job_id)["stage"]

    # ReworkFitted (a fitted ladder): PlanRework, then AnyRework: the rework Map over its items.
    rework = plan_rework(job_id, buckets=buckets, store=store, invocation=Invocation("ladder-3", 512, False))
    rework_items = aws.get_json(WORK, rework["rework_key"])
    stage_after_rework_plan = aws.item(job_id)["stage"]
    rework_summaries = [
        rework_chunk(job_id, item["chunk"], item["rework"], buckets=buckets, store=store,
                     invocation=Invocation(f"reworker-{item['chunk']['index']}", 3008, False))
        for item in (rework_items if rework["items"] > 0 else [])
    ]
    work = Recording(buckets.work)
    merger = Buckets(input=NoSourceReads(), work=work, output=buckets.output, work_bucket_name=WORK)  # type: ignore[arg-type]
    merge_and_publish(job_id, buckets=merger, store=store, invocation=Invocation("merger-1", 1024, True))
    folder = aws.download(f"{job_id}/", tmp_path_factory.mktemp("fitted"))
    manifest = check_against_source(folder, SAMPLE)
    return Fitted(job_id, execution_input, items, summaries, stage_after_split, job_before_fit, fitted_summary,
                  job_after_fit, refit, job_after_refit, results, stage_after_encode, rework, rework_items,
                  rework_summaries, stage_after_rework_plan, work.read, manifest)


def test_the_splitter_writes_the_analysis_items_and_names_them_in_the_execution_input(fitted):
    job_id = fitted.job_id
    assert fitted.execution_input["analysis_key"] == f"jobs/{job_id}/analysis_chunks.json"
    assert fitted.execution_input["chunks_key"] == f"jobs/{job_id}/chunks.json"
    chunks = fitted.job_before_fit["plan"]["chunks"]
    assert len(chunks) == 2 and [item["chunk"] for item in fitted.items] == chunks
    # Before the fit job.json holds the plan of the split (no fit, no per-chunk rates).
    assert fitted.job_before_fit["plan"]["fit"] is None and fitted.job_before_fit["plan"]["rates"] == []
    assert fitted.stage_after_split == "analyse"


def test_each_analyser_keeps_its_trial_points_beside_job_json_and_returns_a_summary(aws, fitted):
    job_id = fitted.job_id
    for item, summary in zip(fitted.items, fitted.summaries):
        index = item["chunk"]["index"]
        stored = aws.get_json(WORK, f"jobs/{job_id}/analysis/chunk_{index:05d}.json")
        assert stored["index"] == index and stored["worker"] == f"analyser-{index}"
        assert stored["figures"]["memory_mb"] == 3008 and stored["figures"]["wall_s"] > 0
        assert stored["started_at"] <= stored["ended_at"]
        # Three candidate sizes of a 720p source (720p, 480p, 360p) at every trial rate factor.
        assert {p["rendition"] for p in stored["points"]} == {"720p", "480p", "360p"}
        assert len(stored["points"]) == 3 * len(AUTO.auto.crfs) and all(p["vmaf"] for p in stored["points"])
        assert summary["chunk"] == index and summary["points"] == len(stored["points"]) and summary["attempt"] == 0
        assert summary["wait_s"] >= 0.25  # dispatched a quarter of a second before it was called
        assert len(json.dumps(summary)) < 200  # the Map's payloads stay small


def test_the_fit_rewrites_job_json_with_the_fitted_rungs_and_each_chunks_rate_factors(aws, fitted):
    job = json.loads(fitted.job_after_fit)
    plan = job["plan"]
    assert plan["fit"]["mode"] == "auto" and plan["fit"]["analysis"]["chunks"] == 2
    assert plan["fit"]["step"]["memory_mb"] == 512
    assert fitted.fitted["renditions"] == [r["name"] for r in plan["renditions"]] and fitted.fitted["analysed"] == 2
    assert all(r["target_vmaf"] and r["maxrate_kbps"] > 0 for r in plan["renditions"])
    assert [r["index"] for r in plan["rates"]] == [0, 1]
    assert all(set(r["crf"]) == set(fitted.fitted["renditions"]) for r in plan["rates"])
    # Everything else the splitter decided is kept.
    assert plan["chunks"] == fitted.job_before_fit["plan"]["chunks"]
    assert {k: v for k, v in job.items() if k != "plan"} == {k: v for k, v in fitted.job_before_fit.items() if k != "plan"}
    # The chunk items carry no rendition data: chunks.json is the splitter's.
    assert all(set(item) == {"chunk"} for item in aws.get_json(WORK, fitted.execution_input["chunks_key"]))


def test_a_retried_fit_gives_the_same_plan_and_leaves_job_json_as_it_is(fitted):
    assert fitted.refit == fitted.fitted
    assert fitted.job_after_refit == fitted.job_after_fit


def test_the_encoders_use_the_fitted_rungs_and_their_chunks_rate_factors(fitted):
    plan = json.loads(fitted.job_after_fit)["plan"]
    for result in fitted.results:
        [rates] = [r for r in plan["rates"] if r["index"] == result["index"]]
        assert result["rates"] == rates
        assert set(result["video"]) == {r["name"] for r in plan["renditions"]}


def test_the_manifest_shows_the_fitted_ladder_its_analysis_timeline_and_cost(aws, fitted):
    manifest = fitted.manifest  # check_against_source passed on the downloaded folder
    job_id = fitted.job_id
    assert manifest["ladder"]["mode"] == "auto" and manifest["chunks"] == 2
    for rendition in manifest["renditions"]:
        assert rendition["target_vmaf"] and rendition["maxrate_kbps"] > 0 and rendition["rate_factor"], rendition
    analyse = manifest["stages"]["analyse"]
    assert analyse["chunks"] == 2 and analyse["max"]["memory_mb"] == 3008
    assert manifest["stages"]["fit"]["memory_mb"] == 512
    bars = manifest["timeline"]["bars"]
    analysed = [b for b in bars if b["stage"] == "analyse"]
    assert [b["worker"] for b in analysed] == ["analyser-0", "analyser-1"]
    assert all(b["memory_mb"] == 3008 for b in analysed)
    assert [b["stage"] for b in bars].count("encode") == 2
    items = {line["item"] for line in manifest["cost"]["lines"]}
    assert {"Lambda ladder analysis", "Lambda ladder fit"} <= items
    # The merger read the analyses beside the facts (a reworked chunk's reworked ones, named by the
    # rework's items), and no media.
    reworked = {item["chunk"]["index"] for item in fitted.rework_items}
    expected = ({f"jobs/{job_id}/job.json", f"jobs/{job_id}/rework_chunks.json"}
                | {f"jobs/{job_id}/analysis/chunk_{i:05d}.json" for i in range(2)}
                | {f"jobs/{job_id}/{'reworked' if i in reworked else 'results'}/chunk_{i:05d}.json" for i in range(2)})
    assert set(fitted.merge_reads) == expected
    item = aws.item(job_id)
    stages_seen = {"split", "analyse", "encode", "merge", "done"} | ({"rework"} if reworked else set())
    assert item["status"] == "COMPLETE" and stages_seen == set(item["stage_times"])


def test_a_fit_after_the_job_ended_keeps_its_record(aws, fitted):
    """A late retry of FitLadder (the job already COMPLETE, or FAILED) does not move its stage."""
    again = fit_ladder(fitted.job_id, buckets=aws.buckets(), store=aws.store())
    assert again["renditions"] == fitted.fitted["renditions"]
    assert aws.item(fitted.job_id)["stage"] == "done"


def test_a_fixed_ladder_sends_the_workflow_straight_to_the_encoders(aws):
    key = "uploads/bunny (fixed).mp4"
    put = aws.upload(SAMPLE, key)
    [obj] = sources_in_event(s3_event(INPUT, key, put, SAMPLE.stat().st_size))
    starts: list[dict] = []
    fixed = AUTO.with_changes(ladder_mode=LadderMode.FIXED)
    started = start_job(obj, buckets=aws.buckets(), store=aws.store(), config=fixed, reject=reject,
                        start_execution=lambda **kwargs: starts.append(kwargs))
    job_id = started["job_id"]
    assert starts[0]["execution_input"]["analysis_key"] == ""
    assert aws.keys(WORK, f"jobs/{job_id}/") == [f"jobs/{job_id}/chunks.json", f"jobs/{job_id}/job.json"]
    assert aws.item(job_id)["stage"] == "encode"


def test_an_analyser_whose_upload_is_gone_fails_as_the_inputs_fault_with_its_reason(aws):
    key = "uploads/bunny (deleted).mp4"
    put = aws.upload(SAMPLE, key)
    [obj] = sources_in_event(s3_event(INPUT, key, put, SAMPLE.stat().st_size))
    buckets, store = aws.buckets(), aws.store()
    starts: list[dict] = []
    job_id = start_job(obj, buckets=buckets, store=store, config=AUTO, reject=reject,
                       start_execution=lambda **kwargs: starts.append(kwargs))["job_id"]
    [item, *_] = aws.get_json(WORK, starts[0]["execution_input"]["analysis_key"])
    aws.s3.delete_object(Bucket=INPUT, Key=key, VersionId=put["VersionId"])
    with pytest.raises(InputError) as raised:  # an input problem: the workflow does not retry it
        analyse_chunk(job_id, item["chunk"], buckets=buckets, store=store)
    assert str(raised.value).startswith("INPUT_NOT_FOUND: ") and "deleted" in str(raised.value)
    # The failed Map reports only its threshold: the failure path reads the chunk's reason.
    assert store.chunk_errors(job_id) == {"chunk_00000": {"code": "INPUT_NOT_FOUND", "message": raised.value.__cause__.message}}
    assert aws.keys(WORK, f"jobs/{job_id}/analysis/") == []
    # Nothing to fit from: not the input's fault, so the workflow's retries and then its catch.
    with pytest.raises(PipelineError, match="INTERNAL_ERROR: the analysis of chunks \\[0, 1\\] is missing"):
        fit_ladder(job_id, buckets=buckets, store=store)


# --- the rework (a fitted ladder, after the encode map) ----------------------------------------


def test_the_rework_plan_writes_the_rework_maps_items_from_the_chunks_facts(aws, fitted):
    """PlanRework: the chunks' original facts -> stages.plan_rework -> rework_chunks.json, each
    item the chunk and its ChunkRework; the answer says whether the map has anything to do."""
    job_id = fitted.job_id
    plan = JobPlan.from_dict(json.loads(fitted.job_after_fit)["plan"])
    expected = stages.plan_rework(plan, [ChunkResult.from_dict(r) for r in fitted.results], AUTO)
    chunks = {c["index"]: c for c in json.loads(fitted.job_after_fit)["plan"]["chunks"]}
    assert fitted.rework_items == [{"chunk": chunks[r.index], "rework": r.to_dict()} for r in expected]
    assert fitted.rework == {"job_id": job_id, "rework_key": f"jobs/{job_id}/rework_chunks.json",
                             "items": len(expected), "chunk_rungs": sum(len(r.rungs) for r in expected)}
    assert fitted.stage_after_encode == "encode"
    assert fitted.stage_after_rework_plan == ("rework" if expected else "encode")
    assert [s["chunk"] for s in fitted.rework_summaries] == [r.index for r in expected]
    # The manifest's record of the rework: as many chunk-rungs as the plan's items hold.
    assert fitted.manifest["ladder"]["rework"]["chunk_rungs"] == fitted.rework["chunk_rungs"]
    # A retried plan (from the encoders' original facts, never the reworked ones): the same items.
    again = plan_rework(job_id, buckets=aws.buckets(), store=aws.store())
    assert again == fitted.rework and aws.get_json(WORK, again["rework_key"]) == fitted.rework_items


def _set_status(store, job_id: str, status: str) -> None:
    store.table.update_item(Key={"job_id": job_id}, UpdateExpression="SET #st = :status",
                            ExpressionAttributeNames={"#st": "status"}, ExpressionAttributeValues={":status": status})


def _bottom_rework(plan: dict, index: int, crf_step: float, reason: str) -> ChunkRework:
    bottom = plan["renditions"][-1]
    crf = [r for r in plan["rates"] if r["index"] == index][0]["crf"][bottom["name"]] - crf_step
    return ChunkRework(index, (RungRework(bottom["name"], crf, bottom["maxrate_kbps"], bottom["bufsize_kbps"],
                                          reason),))


def test_a_reworked_chunk_keeps_its_applied_facts_apart_and_the_merger_publishes_them(aws, fitted):
    """The encoder's rework path, on a chunk-rung chosen here (the short sample may need none):
    the rung encoded again over its segments, the chunk's original facts untouched, the applied
    ones (stages.apply_rework) under jobs/<job_id>/reworked/; a retry gives the same; the merger
    (the job put back to RUNNING, as before its merger ran) prefers them, the manifest says so."""
    job_id = fitted.job_id
    buckets, store = aws.buckets(), aws.store()
    plan = json.loads(fitted.job_after_fit)["plan"]
    chunk = plan["chunks"][1]
    rework = _bottom_rework(plan, 1, 2.0, "chosen by the test")
    [rung] = rework.rungs
    _set_status(store, job_id, "RUNNING")
    original_key, reworked_key = (f"jobs/{job_id}/{kind}/chunk_00001.json" for kind in ("results", "reworked"))
    original = buckets.work.get_bytes(original_key)
    summary = rework_chunk(job_id, chunk, rework.to_dict(), buckets=buckets, store=store,
                           invocation=Invocation("reworker-test", 3008, True))
    assert summary["chunk"] == 1 and summary["rungs"] == [rung.name] and "discarded" not in summary
    assert buckets.work.get_bytes(original_key) == original  # the encoder's facts stay as they were
    applied = aws.get_json(WORK, reworked_key)
    before = json.loads(original)
    assert applied["rework"] == rework.to_dict() and applied["rework_figures"]["memory_mb"] == 3008
    assert applied["rates"]["crf"][rung.name] == rung.crf
    assert applied["rework_started_at"] <= applied["rework_ended_at"]
    # Only the reworked rung changed; the others (and the audio) are the encoder's.
    for name, track in before["video"].items():
        assert (applied["video"][name] == track) == (name != rung.name), name
    assert applied.get("audio") == before.get("audio")
    # A retry applies to the same original facts: the same rungs, the same segments.
    rework_chunk(job_id, chunk, rework.to_dict(), buckets=buckets, store=store)
    again = aws.get_json(WORK, reworked_key)
    assert again["rework"] == applied["rework"] and again["video"].keys() == applied["video"].keys()
    assert len(again["video"][rung.name]["segments"]) == len(applied["video"][rung.name]["segments"])

    # The merger reads the reworked facts of the chunks rework_chunks.json names.
    buckets.work.put_json(f"jobs/{job_id}/rework_chunks.json", [{"chunk": chunk, "rework": rework.to_dict()}])
    work = Recording(buckets.work)
    merger = Buckets(input=NoSourceReads(), work=work, output=buckets.output, work_bucket_name=WORK)  # type: ignore[arg-type]
    merge_and_publish(job_id, buckets=merger, store=store, invocation=Invocation("merger-2", 1024, True))
    assert reworked_key in work.read and original_key not in work.read
    manifest = json.loads(buckets.output.get_bytes(f"{job_id}/manifest.json"))
    assert manifest["ladder"]["rework"]["chunk_rungs"] == 1
    assert aws.item(job_id)["status"] == "COMPLETE"


def test_a_rework_that_ends_after_the_job_failed_removes_what_it_wrote(aws, fitted):
    job_id = fitted.job_id
    buckets, store = aws.buckets(), aws.store()
    plan = json.loads(fitted.job_after_fit)["plan"]
    _set_status(store, job_id, "FAILED")
    summary = rework_chunk(job_id, plan["chunks"][0], _bottom_rework(plan, 0, 0.0, "late").to_dict(),
                           buckets=buckets, store=store)
    assert summary["discarded"] is True
    assert set(buckets.output.keys(f"{job_id}/")) <= {f"{job_id}/manifest.json", f"{job_id}/report.html"}
