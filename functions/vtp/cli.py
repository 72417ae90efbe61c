"""`vtp`: run the pipeline on this machine, list jobs, benchmark against a single ffmpeg."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from vtp.core.config import AutoLadder, Limits, PipelineConfig, RateControl, ladder_setting
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobstore import JobStatus
from vtp.core.manifest import REPORT, Manifest

DEBUG_ENV = "VTP_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="transcode videos into an HLS/DASH ladder")
    run.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    run.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    run.add_argument("--workers", type=int, default=None, help="parallel encodes (default: CPU count)")
    run.add_argument("--keep-work", action="store_true", help="keep the intermediate chunks")
    add_encoding_options(run)

    status = commands.add_parser("status", help="list jobs, newest first; or one job (or every job of one upload key)")
    status.add_argument(
        "job", nargs="?", metavar="KEY_OR_ID",
        help="a job id; with --aws also an upload's key (s3://bucket/key, or a key of the input bucket): "
        "every job of that key, with attempts and the last error",
    )
    status.add_argument("--limit", type=int, default=20)
    status.add_argument("--aws", action="store_true", help="read the jobs table of the deployed stack")
    status.add_argument("--stack", default="VideoTranscodingPipeline", help="stack name, with --aws")
    status.add_argument("--json", action="store_true")

    report = commands.add_parser("report", help="write or open a job's report page (player, renditions, timeline, cost)")
    report.add_argument("job", metavar="JOB_ID")
    report.add_argument("--open", action="store_true", help="serve the job on 127.0.0.1 and open the page (Ctrl-C stops)")
    report.add_argument("--aws", action="store_true", help="a cloud job: fetch its folder from the output bucket")
    report.add_argument("--stack", default="VideoTranscodingPipeline", help="stack name, with --aws")
    report.add_argument("--out", type=Path, default=None, help="with --aws: where to fetch it (default: $VTP_HOME/reports/)")

    bench = commands.add_parser(
        "bench", help="compare the pipeline with one ffmpeg command on the same input; "
        "or, with --ladder compare, the fitted ladder with the fixed one",
    )
    bench.add_argument("input", type=Path)
    bench.add_argument("--workers", type=int, default=None)
    bench.add_argument("--json", action="store_true", help="print only the figures, as JSON")
    bench.add_argument("--repeat", type=int, default=1, help="rounds, alternating the two sides; medians reported")
    bench.add_argument(
        "--vmaf-subsample", type=int, default=None, metavar="N",
        help="with --ladder compare: score VMAF and PSNR on every Nth frame "
        "(default: every frame for short titles, else the smallest odd N within a fixed budget)",
    )
    add_encoding_options(bench, compare=True)

    probe = commands.add_parser("probe", help="print what the pipeline sees in a file and how it would cut it")
    probe.add_argument("input", type=Path)
    add_encoding_options(probe)
    return parser


def add_encoding_options(parser: argparse.ArgumentParser, *, compare: bool = False) -> None:
    defaults = PipelineConfig()
    group = parser.add_argument_group("encoding")
    group.add_argument(
        "--ladder", default="auto",
        help="auto: fitted to each title (default); fixed: 1080p,720p,480p,360p at fixed CRF; or rung names, e.g. 720p,360p"
        + ("; compare: run the fixed ladder and the fitted one, and measure every rung of both" if compare else ""),
    )
    group.add_argument("--top-vmaf", type=float, default=defaults.auto.top_vmaf,
                       help="a fitted ladder's top-rung VMAF target (default %(default)g)")
    group.add_argument("--gop", type=float, default=defaults.gop_s, help="keyframe interval, s (default %(default)s)")
    group.add_argument("--chunk", type=float, default=defaults.chunk_s, help="chunk length, s (default %(default)s)")
    group.add_argument("--segment", type=float, default=defaults.segment_s, help="HLS/DASH segment, s (default %(default)s)")
    group.add_argument("--preset", default=defaults.preset, help="x264 preset (default %(default)s)")
    limits = defaults.limits
    group.add_argument("--max-size-gib", type=float, default=limits.max_bytes / 1024**3, help="refuse larger inputs (default %(default)g)")
    group.add_argument("--max-duration", type=float, default=limits.max_duration_s, help="refuse longer inputs, s (default %(default)g)")
    group.add_argument("--max-resolution", default=f"{limits.max_width}x{limits.max_height}", help="refuse larger pictures (default %(default)s)")
    group.add_argument(
        "--rate-control", choices=[mode.value for mode in RateControl], default=defaults.rate_control.value,
        help="crf: constant quality; capped_crf: quality with the rung bitrate as peak; bitrate: target bitrate",
    )


def config_from(args: argparse.Namespace) -> PipelineConfig:
    changes = {
        "gop_s": args.gop,
        "chunk_s": args.chunk,
        "segment_s": args.segment,
        "preset": args.preset,
        "rate_control": RateControl(args.rate_control),
    }
    changes.update(ladder_setting(args.ladder))
    changes["auto"] = dataclasses.replace(AutoLadder(), top_vmaf=args.top_vmaf)
    try:
        max_width, max_height = (int(part) for part in args.max_resolution.lower().split("x"))
    except ValueError:
        raise PipelineError(ErrorCode.INVALID_CONFIG, f"--max-resolution {args.max_resolution!r} is not WIDTHxHEIGHT") from None
    changes["limits"] = Limits(
        max_bytes=int(args.max_size_gib * 1024**3), max_duration_s=args.max_duration,
        max_width=max_width, max_height=max_height,
    )
    return PipelineConfig(**changes)


def command_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vtp.local.jobstore import SqliteJobStore
    from vtp.local.progress import RichProgress
    from vtp.local.runner import default_workers, run_job

    config = config_from(args)
    out = Console()
    err = Console(stderr=True)
    store = SqliteJobStore()
    workers = args.workers or default_workers()
    failures = 0
    for source in args.inputs:
        with RichProgress(err, title=source.name) as progress:
            result = run_job(
                source, args.out, config=config, workers=workers, store=store,
                progress=progress, keep_work=args.keep_work,
            )
        if result.status is JobStatus.COMPLETE:
            report_complete(out, result.job_id, result.folder, result.manifest)
        else:
            failures += 1
            report_failed(out, err, source, result.job_id, result.folder, result.error.to_dict())
    return 1 if failures else 0


def report_complete(out, job_id: str, folder: Path, manifest: Manifest, wall_s: float | None = None, where: str = "") -> None:
    """The summary of a finished job: id, folder, renditions, wall time, speed, critical path."""
    source = manifest.source or {}
    duration = source.get("duration_s", 0.0)
    stages = manifest.stages
    wall = wall_s if wall_s is not None else (stages.total_s if stages else 0.0)
    rungs = ", ".join(
        f"{r.name} {r.measured_bitrate_kbps:.0f} kbit/s" + (f" VMAF {r.quality['vmaf_mean']:.1f}" if r.quality else "")
        + (f" +-{r.quality['vmaf_error']:.1f}" if r.quality and r.quality.get("vmaf_error") is not None else "")
        + (f" (target {r.target_vmaf:g})" if r.target_vmaf is not None else "")
        for r in manifest.renditions
    )
    out.print(f"job {job_id} COMPLETE{where}", highlight=False, soft_wrap=True)
    out.print(f"  output: {folder}", highlight=False, soft_wrap=True)
    out.print(
        f"  {len(manifest.renditions)} renditions ({rungs}), {manifest.chunks} chunks, "
        f"{wall:.1f} s wall for {duration:.1f} s of video ({duration / max(wall, 1e-9):.2f}x realtime)",
        highlight=False, soft_wrap=True,
    )
    if stages is not None and stages.encode is not None:
        out.print(
            f"  split {stages.split.wall_s:.2f} s ({stages.split.bytes_read / 1e6:.1f} MB read), "
            + (f"ladder analysis {stages.analyse.span_s:.1f} s over {stages.analyse.chunks} chunks "
               f"({stages.analyse.sum.cpu_s:.1f} CPU-s), fit {stages.fit.wall_s:.2f} s, "
               if stages.analyse is not None and stages.fit is not None else "")
            + f"encode {stages.encode.span_s:.1f} s over {stages.encode.chunks} chunks, "
            + _rework_text(manifest.ladder, stages)
            + f"merge {stages.merge.wall_s:.2f} s; critical path {stages.critical_path_s:.1f} s",
            highlight=False, soft_wrap=True,
        )
    cost = manifest.cost or {}
    if cost:
        spent = f"{cost['cpu_s']:.1f} CPU-s; on AWS about" if cost.get("cpu_s") is not None else "on AWS"
        out.print(
            f"  cost: {spent} ${cost['total_usd']:.4f} (MediaConvert: ${cost['mediaconvert_usd']:.4f})",
            highlight=False, soft_wrap=True,
        )
    if manifest.outputs.get("report"):
        out.print(f"  report: {folder / manifest.outputs['report']} (vtp report {job_id} --open)", highlight=False, soft_wrap=True)


def report_failed(out, err, source: Path, job_id: str, folder: Path, error: dict) -> None:
    """One line naming the problem on stderr; where the FAILED manifest is on stdout."""
    err.print(f"vtp: {source}: {error.get('code')}: {error.get('message')}", highlight=False, markup=False, soft_wrap=True)
    out.print(f"job {job_id} FAILED ({error.get('code')}); manifest: {folder / 'manifest.json'}", highlight=False, soft_wrap=True)


def command_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.aws:
        from vtp.aws.jobstore import DynamoJobStore

        store = DynamoJobStore.from_environment(args.stack)
        if args.job:
            return _status_of_aws_jobs(store, args)
    else:
        from vtp.local.jobstore import SqliteJobStore

        store = SqliteJobStore()
    if args.job:
        found = store.get(args.job)
        records = [found] if found else []
        if not records:
            print(f"vtp: no job {args.job}", file=sys.stderr)
            return 1
    else:
        records = store.recent(args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    table = Table()
    table.add_column("job", no_wrap=True)
    for name in ("status", "stage", "chunks", "created", "total s", "error", "report"):
        table.add_column(name)
    for record in records:
        total = record.timings.get("total_s")
        table.add_row(
            record.job_id,
            str(record.status),
            record.stage,
            f"{record.chunks_done}/{record.chunks_total}",
            record.created_at,
            f"{total:.1f}" if total else "",
            f"{record.error_code}: {record.error_message}" if record.error_code else "",
            _report_of(record, args.aws),
        )
    Console().print(table)
    return 0


def _report_of(record, aws: bool) -> str:
    """Where a finished job's page is: the file (local), or the command that fetches it (AWS)."""
    if record.status not in (JobStatus.COMPLETE, JobStatus.FAILED):
        return ""
    if aws:
        return f"vtp report {record.job_id} --aws"
    page = Path(record.output) / REPORT if record.output else None
    return str(page) if page is not None and page.is_file() else ""


def _status_of_aws_jobs(store, args: argparse.Namespace) -> int:
    """`vtp status --aws KEY_OR_ID`: the job with that id, else every job of that upload key
    (one per uploaded version), with its attempts, execution and last error."""
    from rich.console import Console
    from rich.table import Table

    from vtp import contract
    from vtp.aws.jobstore import stack_output

    bucket = None
    if not args.job.startswith("s3://") and store.item(args.job) is None:
        bucket = os.environ.get(contract.ENV_INPUT_BUCKET) or stack_output(args.stack, contract.OUTPUT_INPUT_BUCKET)
    items = store.find(args.job, input_bucket=bucket)
    if not items:
        print(f"vtp: no job with the id or upload key {args.job}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(items, indent=2, default=str))
        return 0
    table = Table()
    table.add_column("job", no_wrap=True)
    for name in ("status", "stage", "attempts", "execution", "chunks", "created", "error"):
        table.add_column(name)
    for item in items:
        last = item.get("last_error") or {}
        if item.get("error_code"):
            error = f"{item['error_code']}: {item.get('error_message', '')}"
        elif last:
            error = f"last error: {last.get('code')}: {last.get('message', '')}"
        else:
            error = ""
        table.add_row(
            item["job_id"], str(item.get("status", "")), str(item.get("stage", "")), str(item.get("attempts", "")),
            str(item.get("execution", "")), f"{item.get('chunks_done', 0)}/{item.get('chunks_total', 0)}",
            str(item.get("created_at", "")), error,
        )
    Console().print(table)
    return 0


def command_report(args: argparse.Namespace) -> int:
    """The page of a local job (from the job store), or of a cloud job (fetched with its media)."""
    from vtp.report.serve import fetch_cloud_job, local_report, open_and_wait

    if args.aws:
        from vtp import contract
        from vtp.aws.jobstore import stack_output
        from vtp.aws.storage import S3Store
        from vtp.local.jobstore import default_store_path

        bucket = os.environ.get(contract.ENV_OUTPUT_BUCKET) or stack_output(args.stack, contract.OUTPUT_OUTPUT_BUCKET)
        folder = fetch_cloud_job(S3Store(bucket), args.job, args.out or default_store_path().parent / "reports")
    else:
        from vtp.local.jobstore import SqliteJobStore

        record = SqliteJobStore().get(args.job)
        if record is None:
            raise PipelineError(ErrorCode.INVALID_CONFIG, f"no local job {args.job} (vtp status lists them)")
        folder = Path(record.output)
    page = local_report(folder)
    print(page)
    if args.open:
        open_and_wait(folder, print)
    return 0


LADDER_COMPARE = "compare"


def command_bench(args: argparse.Namespace) -> int:
    if args.ladder.strip().lower() == LADDER_COMPARE:
        from vtp.ladder_bench import run_ladder_benchmark

        if args.repeat != 1:
            raise PipelineError(ErrorCode.INVALID_CONFIG, "--repeat is for the single-ffmpeg benchmark, not --ladder compare")
        # Both ladders are run: the fixed one (the default rungs) and the fitted one.
        config = config_from(argparse.Namespace(**{**vars(args), "ladder": "auto"}))
        return run_ladder_benchmark(args.input, config, workers=args.workers, as_json=args.json,
                                    subsample=args.vmaf_subsample)
    if args.vmaf_subsample is not None:
        raise PipelineError(ErrorCode.INVALID_CONFIG, "--vmaf-subsample is for --ladder compare")
    from vtp.bench import run_benchmark

    return run_benchmark(args.input, config_from(args), workers=args.workers, as_json=args.json, repeat=args.repeat)


def command_probe(args: argparse.Namespace) -> int:
    from vtp.core import stages
    from vtp.core.source import local_source

    info, plan, figures = stages.inspect(local_source(args.input), config_from(args))
    print(json.dumps({
        "source": info.to_dict(),
        "renditions": [r.__dict__ for r in plan.renditions],
        "chunks": [c.to_dict() for c in plan.chunks],
        "probe": figures.to_dict(),
    }, indent=2))
    return 0


COMMANDS = {
    "run": command_run, "status": command_status, "report": command_report, "bench": command_bench,
    "probe": command_probe,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C does (children stopped, job FAILED, work removed)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except PipelineError as error:
        print(f"vtp: {error.code}: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print("vtp: stopped (SIGTERM)" if terminated else "vtp: interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # the reader went away (`vtp probe x | head`): nothing to say
        sys.stderr.close()
        return 141
    except Exception as error:  # the last line of defence: one line, not a traceback
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        print(f"vtp: unexpected error: {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


def _rework_text(ladder: dict | None, stages) -> str:
    """'rework 8.4 s (2 chunk-rungs: VMAF under target 2, peaks 0), ': what a fitted ladder encoded again."""
    rework = (ladder or {}).get("rework")
    if not rework:
        return ""
    if not rework["chunk_rungs"]:
        return "rework none, "
    items = rework["items"]
    quality = sum("VMAF" in item["reason"] for item in items)
    peaks = sum("segment" in item["reason"] for item in items)  # a peak cut, or bits given to cheap chunks
    span = stages.rework.span_s if stages.rework else 0.0
    return (f"rework {span:.1f} s ({rework['chunk_rungs']} chunk-rungs encoded again: {quality} for quality, "
            f"{peaks} for peaks), ")
