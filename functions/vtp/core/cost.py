"""What a job cost: priced from its own recorded figures with a dated price table.

On AWS: Lambda GB-seconds of each function at its configured memory (the figures each stage
measured, so init and runtime overhead are not in them), Lambda requests, Step Functions
state transitions (the map's child executions included), S3 requests and a month of storage
of the output, the job record's DynamoDB writes and the completion event. Next to it, what
the same ladder would cost at AWS Elemental MediaConvert's published on-demand price.

Locally the headline is CPU-seconds; the AWS lines are then an estimate of the same job on
the stack's default memory sizes (a stage's CPU-seconds spread over the vCPUs its memory buys).
Every figure is in the manifest, so the total can be checked by hand (README: "Cost").
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from vtp import contract
from vtp.core.manifest import RenditionEntry, StageFigures, Stages, TimelineBar

PRICE_DATE = "2026-11-30"  # when the table below was last checked against AWS's public price pages
PRICE_REGION_ENV = "VTP_PRICE_REGION"
DEFAULT_REGION = "us-east-1"
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU at 1,769 MB

# Bookkeeping each job does beside its media (see vtp.aws.pipeline): the splitter writes job.json
# and the chunk list; each encoder reads job.json and writes its facts; the merger writes the
# manifest; the job record is written at the claim, the start, each chunk and the end.
SPLIT_DOCUMENTS = 2
# FittedLadder (the choice), EncodeChunks (the map), ReworkFitted (the choice), MergeAndPublish,
# PublishCompletion, JobSucceeded
MAIN_TRANSITIONS = 6


@dataclass(frozen=True)
class PriceTable:
    lambda_gb_s: float  # x86_64, first tier
    lambda_request: float
    sfn_transition: float  # Standard workflows
    s3_put: float  # PUT, COPY, POST, LIST
    s3_get: float
    s3_gb_month: float  # S3 Standard, first 50 TB
    dynamodb_write: float  # on-demand write request unit
    eventbridge_event: float
    # MediaConvert on-demand, Basic tier (AVC, single pass), first volume tier: per normalized
    # minute of output; multipliers: SD x1, HD (720-1080 lines) x2, UHD x4; above 30 fps x2.
    mediaconvert_minute: float


US = PriceTable(
    lambda_gb_s=0.0000166667, lambda_request=0.20 / 1e6, sfn_transition=0.025 / 1000,
    s3_put=0.005 / 1000, s3_get=0.0004 / 1000, s3_gb_month=0.023,
    dynamodb_write=0.625 / 1e6, eventbridge_event=1.00 / 1e6, mediaconvert_minute=0.0075,
)
PRICES: dict[str, PriceTable] = {"us-east-1": US, "us-east-2": US, "us-west-2": US}


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    unit_price: float
    usd: float

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "quantity": round(self.quantity, 6), "unit": self.unit,
                "unit_price": float(f"{self.unit_price:.6g}"), "usd": round(self.usd, 8)}


@dataclass(frozen=True)
class JobCost:
    where: str  # aws: priced from the run; local: cpu_s, and the AWS lines as an estimate
    region: str
    lines: tuple[CostLine, ...]
    total_usd: float
    mediaconvert_usd: float
    mediaconvert_basis: str
    cpu_s: float | None
    note: str
    currency: str = "USD"
    price_date: str = PRICE_DATE

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lines"] = [line.to_dict() for line in self.lines]
        data["total_usd"] = round(self.total_usd, 8)
        data["mediaconvert_usd"] = round(self.mediaconvert_usd, 8)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobCost":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in fields},
                      "lines": tuple(CostLine(**line) for line in data["lines"])})


def price_region(region: str | None = None) -> tuple[str, PriceTable, str]:
    """The region to price in (argument, VTP_PRICE_REGION, AWS_REGION, us-east-1) and its table;
    a region the table lacks is priced as us-east-1, saying so."""
    wanted = region or os.environ.get(PRICE_REGION_ENV) or os.environ.get("AWS_REGION") or DEFAULT_REGION
    if wanted in PRICES:
        return wanted, PRICES[wanted], ""
    return DEFAULT_REGION, PRICES[DEFAULT_REGION], f"no price table for {wanted}: priced as {DEFAULT_REGION}. "


def job_cost(
    *,
    where: str,
    stages: Stages,
    bars: tuple[TimelineBar, ...],
    renditions: tuple[RenditionEntry, ...],
    frame_rate: float,
    stored_bytes: int,
    report_objects: int = 0,
    region: str | None = None,
) -> JobCost:
    region, prices, region_note = price_region(region)
    chunks = [bar for bar in bars if bar.stage == "encode"]
    chunk_figures = _chunk_figures(stages)
    local = where != "aws"
    if local:
        # What the same work would take on the stack's default memory sizes.
        split_s = stages.split.cpu_s / (contract.SPLITTER_MEMORY_MB / LAMBDA_MB_PER_VCPU)
        encode_s = chunk_figures.cpu_s / (contract.DEFAULT_ENCODER_MEMORY_MB / LAMBDA_MB_PER_VCPU)
        merge_s = max(stages.merge.cpu_s, stages.merge.wall_s)
        memory = {"split": contract.SPLITTER_MEMORY_MB, "encode": contract.DEFAULT_ENCODER_MEMORY_MB,
                  "merge": contract.MERGER_MEMORY_MB, "analyse": contract.ANALYSER_MEMORY_MB,
                  "fit": contract.LADDER_MEMORY_MB}
        analyse_s = (stages.analyse.sum.cpu_s if stages.analyse else 0.0) / (memory["analyse"] / LAMBDA_MB_PER_VCPU)
        fit_s = stages.fit.cpu_s if stages.fit else 0.0
    else:
        split_s, encode_s, merge_s = stages.split.wall_s, chunk_figures.wall_s, stages.merge.wall_s
        memory = {"split": stages.split.memory_mb or contract.SPLITTER_MEMORY_MB,
                  "encode": max((bar.memory_mb for bar in chunks), default=0) or contract.DEFAULT_ENCODER_MEMORY_MB,
                  "merge": stages.merge.memory_mb or contract.MERGER_MEMORY_MB,
                  "analyse": (stages.analyse.max.memory_mb if stages.analyse else 0) or contract.ANALYSER_MEMORY_MB,
                  "fit": (stages.fit.memory_mb if stages.fit else 0) or contract.LADDER_MEMORY_MB}
        analyse_s = stages.analyse.sum.wall_s if stages.analyse else 0.0
        fit_s = stages.fit.wall_s if stages.fit else 0.0
    analysed = stages.analyse.chunks if stages.analyse else 0
    fitted = 1 if stages.fit else 0
    # A fitted ladder's rework: its planning step (the ladder function, its run not measured:
    # a fraction of a second at 512 MB) reads every chunk's result and writes the rework map's
    # items; each item is an encoder run and its result.
    rework = stages.rework.sum if stages.rework else StageFigures()
    reworked = stages.rework.chunks if stages.rework else 0
    rework_s = rework.cpu_s / (memory["encode"] / LAMBDA_MB_PER_VCPU) if local else rework.wall_s
    invocations = 2 + sum(1 + bar.attempt for bar in chunks) + analysed + 2 * fitted + reworked
    lines = [
        _line("Lambda splitter", split_s * memory["split"] / 1024, f"GB-s at {memory['split']} MB", prices.lambda_gb_s),
        _line("Lambda encoders", encode_s * memory["encode"] / 1024, f"GB-s at {memory['encode']} MB", prices.lambda_gb_s),
        _line("Lambda merger", merge_s * memory["merge"] / 1024, f"GB-s at {memory['merge']} MB", prices.lambda_gb_s),
        *([_line("Lambda ladder analysis", analyse_s * memory["analyse"] / 1024, f"GB-s at {memory['analyse']} MB",
                 prices.lambda_gb_s),
           _line("Lambda ladder fit", fit_s * memory["fit"] / 1024, f"GB-s at {memory['fit']} MB", prices.lambda_gb_s)]
          if analysed else []),
        *([_line("Lambda rework encodes", rework_s * memory["encode"] / 1024, f"GB-s at {memory['encode']} MB",
                 prices.lambda_gb_s)] if fitted else []),
        _line("Lambda requests", invocations, "invocations", prices.lambda_request),
        # The analysis map, its items, and the fit; the rework's plan, its choice, its map and items.
        _line("Step Functions", MAIN_TRANSITIONS + sum(1 + bar.attempt for bar in chunks) + (analysed + 2 if analysed else 0)
              + 2 * fitted + (reworked + 1 if reworked else 0),
              "state transitions", prices.sfn_transition),
        # The analysis map's items, each analysis result, and the fitted job.json; the rework's
        # items, its segments and each reworked result.
        _line("S3 PUT requests", _puts(stages, chunk_figures, len(chunks), report_objects) + (analysed + 2 if analysed else 0)
              + fitted + rework.objects_written + reworked, "requests", prices.s3_put),
        _line("S3 GET requests", _gets(stages, chunk_figures, len(chunks)) + fitted * len(chunks)
              + rework.requests - rework.objects_written + reworked, "requests", prices.s3_get),
        _line("S3 storage, one month", stored_bytes / 1e9, "GB-month", prices.s3_gb_month),
        _line("DynamoDB writes", 3 + len(chunks), "write request units", prices.dynamodb_write),
        _line("EventBridge", 1, "events", prices.eventbridge_event),
    ]
    mediaconvert, basis = _mediaconvert(renditions, frame_rate, prices)
    cpu_s = stages.split.cpu_s + chunk_figures.cpu_s + stages.merge.cpu_s + \
        (stages.analyse.sum.cpu_s if stages.analyse else 0.0) + (stages.fit.cpu_s if stages.fit else 0.0) + rework.cpu_s
    note = region_note + (
        "Local job: CPU-seconds on this machine; the AWS lines estimate the same work on the stack's default "
        "memory sizes (a stage's CPU-seconds over the vCPUs its memory buys)."
        if local else
        "Lambda is priced on each stage's measured duration (init and runtime overhead not included); a failed "
        "attempt's time is not in the figures. Data transfer out (viewers) is not included."
    )
    return JobCost(
        where="local" if local else "aws", region=region, lines=tuple(lines),
        total_usd=sum(line.usd for line in lines), mediaconvert_usd=mediaconvert, mediaconvert_basis=basis,
        cpu_s=round(cpu_s, 3) if local else None, note=note,
    )


def _line(item: str, quantity: float, unit: str, unit_price: float) -> CostLine:
    return CostLine(item, quantity, unit, unit_price, quantity * unit_price)


def _chunk_figures(stages: Stages) -> StageFigures:
    return stages.encode.sum if stages.encode else StageFigures()


def _puts(stages: Stages, chunks: StageFigures, count: int, report_objects: int) -> int:
    # Media and documents as the stages recorded them, one fact file per chunk, the job's
    # documents, the manifest and the report's files.
    return stages.split.objects_written + SPLIT_DOCUMENTS + chunks.objects_written + count + \
        stages.merge.objects_written + 1 + report_objects


def _gets(stages: Stages, chunks: StageFigures, count: int) -> int:
    # Reads of the source (one per open or seek), job.json by each encoder, and the merger's.
    reads = [stages.split, chunks, stages.merge]
    return sum(f.requests - f.objects_written for f in reads) + count


def _mediaconvert(renditions: tuple[RenditionEntry, ...], frame_rate: float, prices: PriceTable) -> tuple[float, str]:
    total = 0.0
    parts = []
    for rendition in renditions:
        minutes = max(rendition.duration_s, 10.0) / 60  # billed per second, 10 s at least
        lines = min(rendition.width, rendition.height)
        size = 1 if lines < 720 else 2 if lines <= 1080 else 4
        rate = 1 if frame_rate <= 30 else 2 if frame_rate <= 60 else 4
        total += minutes * prices.mediaconvert_minute * size * rate
        parts.append(f"{rendition.name} {minutes:.2f} min x{size * rate}")
    basis = (f"Basic tier on-demand, ${prices.mediaconvert_minute} per normalized output minute "
             f"(SD x1, HD x2, UHD x4; above 30 fps x2): " + ", ".join(parts))
    return total, basis
