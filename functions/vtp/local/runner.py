"""The local runner: the whole pipeline on one machine, chunks encoded by a pool of workers.

Outputs are built in `<out>/.<job_id>.partial/` and renamed into place when complete;
`manifest.json` is written last. A failed job leaves only its FAILED manifest.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vtp.core import job as stages
from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobid import job_id_for
from vtp.core.jobstore import JobRecord, JobStatus, JobStore
from vtp.core.manifest import failed_manifest, write_manifest
from vtp.core.tools import ProcessStats

WORK_DIR = ".work"


class Progress(Protocol):
    """Where the runner reports what it is doing (the CLI draws bars from it)."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, name: str, amount: int = 1) -> None: ...


class NoProgress:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, name: str, amount: int = 1) -> None:
        pass


@dataclass
class JobResult:
    job_id: str
    status: JobStatus
    folder: Path
    manifest: dict[str, Any]
    error: PipelineError | None = None
    largest_encode: ProcessStats | None = None
    encode_cpu_s: float = 0.0


def default_workers() -> int:
    return os.cpu_count() or 1


def new_job_id(source: Path) -> str:
    try:
        stat = source.stat()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        fingerprint = "missing"
    return job_id_for(f"local:{source.resolve()}:{fingerprint}:{time.time_ns()}", source.name)


def run_job(
    source: Path,
    out_root: Path,
    *,
    config: PipelineConfig = PipelineConfig(),
    workers: int | None = None,
    store: JobStore | None = None,
    progress: Progress | None = None,
    keep_work: bool = False,
) -> JobResult:
    workers = max(1, workers or default_workers())
    if config.encoder_threads == 0 and workers >= default_workers():
        # Every core already runs a chunk process: one thread per encoder avoids x264's
        # frame-threading overhead (measured: 4 % less CPU for the same wall time).
        config = config.with_changes(encoder_threads=1)
    progress = progress or NoProgress()
    source = Path(source)
    job_id = new_job_id(source)
    final_dir = out_root / job_id
    staging_dir = out_root / f".{job_id}.partial"
    workspace = stages.Workspace(out_root / WORK_DIR / job_id)
    timings = stages.Timings()
    started = time.monotonic()
    if store is not None:
        store.create(JobRecord(job_id=job_id, input=str(source), output=str(final_dir)))
    info = None
    try:
        with timings.measure("probe_s"):
            progress.stage("probe", 1)
            info, plan = stages.prepare(source, config)
            progress.advance("probe")
        _update(store, job_id, stage="split", chunks_total=len(plan.chunks))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            progress.stage("split", len(plan.chunks))
            with timings.measure("split_s"):
                stages.run_all(pool, [
                    (lambda c=chunk: stages.cut_piece(source, c, info, workspace)) for chunk in plan.chunks
                ], on_done=lambda _: progress.advance("split"))

            _update(store, job_id, stage="encode")
            progress.stage("encode", len(plan.chunks))
            done = 0

            def chunk_finished(stats: ProcessStats | None) -> None:
                nonlocal done
                if stats is None:
                    return  # the audio job
                done += 1
                progress.advance("encode")
                _update(store, job_id, chunks_done=done)

            # Longest chunks first, the audio (one pass over the file) beside them.
            ordered = sorted(plan.chunks, key=lambda c: -((c.end_s or info.duration_s) - c.start_s))
            jobs = [lambda: (stages.encode_audio(source, info, config, workspace), None)[1]]
            jobs += [(lambda c=chunk: stages.encode_chunk(c, info, plan, config, workspace)) for chunk in ordered]
            with timings.measure("encode_s"):
                encode_stats = stages.run_all(pool, jobs, on_done=chunk_finished)

        _update(store, job_id, stage="package")
        progress.stage("package", 2)
        if staging_dir.exists():
            shutil.rmtree(staging_dir)
        manifest = stages.finish(
            job_id=job_id,
            source_name=str(source),
            info=info,
            plan=plan,
            config=config,
            workspace=workspace,
            publish_dir=staging_dir,
            timings=timings,
            workers=workers,
            on_step=lambda step: progress.advance("package"),
        )
        timings["total_s"] = time.monotonic() - started
        manifest["timings"]["total_s"] = round(timings["total_s"], 3)
        os.replace(staging_dir, final_dir)
        write_manifest(final_dir, manifest)
        _update(store, job_id, status=JobStatus.COMPLETE, stage="done", timings=manifest["timings"])
        chunk_stats = [s for s in encode_stats if s is not None]
        return JobResult(
            job_id,
            JobStatus.COMPLETE,
            final_dir,
            manifest,
            largest_encode=max(chunk_stats, key=lambda s: s.max_rss_mb, default=None),
            encode_cpu_s=sum(s.cpu_s for s in encode_stats if s is not None),
        )
    except BaseException as failure:
        error = _as_pipeline_error(failure)
        timings["total_s"] = time.monotonic() - started
        shutil.rmtree(staging_dir, ignore_errors=True)
        shutil.rmtree(final_dir, ignore_errors=True)
        manifest = failed_manifest(job_id, str(source), error, timings, info.summary() if info else None)
        write_manifest(final_dir, manifest)
        _update(
            store, job_id, status=JobStatus.FAILED, error_code=str(error.code),
            error_message=error.message, timings=manifest["timings"],
        )
        if not isinstance(failure, Exception):
            raise  # KeyboardInterrupt and the like still stop the program, after the record is kept
        return JobResult(job_id, JobStatus.FAILED, final_dir, manifest, error)
    finally:
        if not keep_work:
            shutil.rmtree(workspace.root, ignore_errors=True)
            try:
                workspace.root.parent.rmdir()
            except OSError:
                pass


def _as_pipeline_error(failure: BaseException) -> PipelineError:
    if isinstance(failure, PipelineError):
        return failure
    if isinstance(failure, KeyboardInterrupt):
        return PipelineError(ErrorCode.INTERNAL_ERROR, "interrupted")
    detail = "".join(traceback.format_exception_only(type(failure), failure)).strip()
    return PipelineError(ErrorCode.INTERNAL_ERROR, f"unexpected error: {detail}")


def _update(store: JobStore | None, job_id: str, **fields: Any) -> None:
    if store is not None:
        store.update(job_id, **fields)
