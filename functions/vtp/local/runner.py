"""The local runner: the same design as on AWS, on one machine.

Inspect the source (no copy of it), encode the chunks on a pool of workers, each reading
its own time range of the source and writing its final segments straight into
`<out>/.<job_id>.partial/`, then publish the playlists from the chunks' facts. The
staging folder is renamed into place when complete and `manifest.json` is written last;
a failed job leaves only its FAILED manifest.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from vtp.core import stages
from vtp.core.analysis import ChunkAnalysis
from vtp.core.config import PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobid import job_id_for
from vtp.core.jobstore import JobRecord, JobStatus, JobStore
from vtp.core.manifest import Manifest, StageFigures, Stages, failed_manifest, write_manifest
from vtp.core.source import local_source
from vtp.core.storage import FolderStore
from vtp.core.timeline import job_timeline
from vtp.core.tools import terminate_running
from vtp.report.data import build_report_data, segments_from_results
from vtp.report.page import PLAYER_FILES, write_report

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
    manifest: Manifest
    error: PipelineError | None = None
    results: tuple[ChunkResult, ...] = ()


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
    source_path: Path,
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
    source_path = Path(source_path)
    job_id = new_job_id(source_path)
    final_dir = out_root / job_id
    staging_dir = out_root / f".{job_id}.partial"
    scratch = out_root / WORK_DIR / job_id
    started_at = time.time()
    if store is not None:
        store.create(JobRecord(job_id=job_id, input=str(source_path), output=str(final_dir.resolve())))
    stage = "split"
    info = None
    split = StageFigures()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
    done_results: list[ChunkResult] = []  # for the timeline of a job that fails
    analyses: list[ChunkAnalysis] = []
    try:
        progress.stage("probe", 1)
        source = local_source(source_path)
        info, plan, split = stages.inspect(source, config, workers=workers)
        progress.advance("probe")
        if stages.needs_analysis(config):
            stage = "analyse"
            _update(store, job_id, stage="analyse", chunks_total=len(plan.chunks), timings={"split_s": split.wall_s})
            analyses = _analyse(pool, source, info, plan, config, scratch, progress)
            plan = stages.fit(info, plan, config, analyses, worker=_host())
        _update(store, job_id, stage="encode", chunks_total=len(plan.chunks), timings={"split_s": split.wall_s})

        stage = "encode"
        output = FolderStore(staging_dir)
        if staging_dir.exists():
            shutil.rmtree(staging_dir)
        progress.stage("encode", len(plan.chunks))
        done = 0

        def chunk_finished(result: ChunkResult) -> None:
            nonlocal done
            done += 1
            done_results.append(result)
            progress.advance("encode")
            _update(store, job_id, chunks_done=done)

        # Longest chunks first, so that the last to finish are short ones.
        ordered = sorted(plan.chunks, key=lambda c: -((c.end_s or info.duration_s) - c.start_s))
        launches = _Launches(len(ordered), workers, config)
        queued_at = time.time()
        jobs = [
            (lambda c=chunk: _on_worker(stages.encode_chunk(
                source, c, info, plan, launches.config_for_next(), scratch=scratch / c.name, output=output
            ), queued_at))
            for chunk in ordered
        ]
        results = stages.run_all(pool, jobs, on_done=chunk_finished)
        reworks = stages.plan_rework(plan, results, config)
        if reworks:
            stage = "rework"
            _update(store, job_id, stage="rework")
            results = _rework(pool, source, info, plan, config, reworks, results, scratch, output, progress)

        stage = "merge"
        _update(store, job_id, stage="merge")
        progress.stage("publish", 1)
        manifest = stages.publish(
            job_id=job_id, source_name=str(source_path), info=info, plan=plan, config=config, results=results,
            store=output, prefix="", split=split, started_at=started_at, split_worker=_host(),
            merge_worker=_host(), report_objects=1 + len(PLAYER_FILES), analyses=tuple(analyses),
        )
        write_report(staging_dir, build_report_data(manifest, segments_from_results(results, [r.name for r in plan.renditions])))
        os.replace(staging_dir, final_dir)
        write_manifest(final_dir, manifest)
        progress.advance("publish")
        _update(store, job_id, status=JobStatus.COMPLETE, stage="done", timings=_timings(manifest.stages))
        return JobResult(job_id, JobStatus.COMPLETE, final_dir, manifest, results=tuple(results))
    except BaseException as failure:
        # Stop the encoders first: the pool cannot finish while their ffmpeg runs.
        terminate_running()
        pool.shutdown(wait=True, cancel_futures=True)
        error = _as_pipeline_error(failure)
        shutil.rmtree(staging_dir, ignore_errors=True)
        shutil.rmtree(final_dir, ignore_errors=True)
        stage_figures = Stages(split=split, encode=None, merge=StageFigures(), total_s=time.time() - started_at)
        manifest = failed_manifest(
            job_id, str(source_path), error, stage=stage, stages=stage_figures,
            source_summary=_summary(info),
            timeline=job_timeline(started_at=started_at, split=split, results=list(done_results), split_worker=_host()),
        )
        _write_failed_report(final_dir, manifest)
        write_manifest(final_dir, manifest)
        _update(
            store, job_id, status=JobStatus.FAILED, stage=f"failed:{stage}", error_code=str(error.code),
            error_message=error.message, timings={"total_s": stage_figures.total_s},
        )
        if not isinstance(failure, Exception):
            raise  # KeyboardInterrupt, SystemExit: still stop the program, after the record is kept
        return JobResult(job_id, JobStatus.FAILED, final_dir, manifest, error)
    finally:
        pool.shutdown(wait=True)
        if not keep_work:
            shutil.rmtree(scratch, ignore_errors=True)
            for folder in (scratch.parent,):
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _analyse(pool, source, info, plan, config: PipelineConfig, scratch: Path, progress: Progress) -> list[ChunkAnalysis]:
    """The analysis map, on the worker pool: one task per chunk."""
    chunks = stages.analysis_chunks(plan, config)
    progress.stage("analyse", len(chunks))
    jobs = [
        (lambda c=chunk: replace(stages.analyse_chunk(source, c, info, config, scratch=scratch / f"analysis_{c.name}",
                                                      chunks=len(plan.chunks)),
                                 worker=f"{_host()} {threading.current_thread().name}"))
        for chunk in chunks
    ]
    return stages.run_all(pool, jobs, on_done=lambda result: progress.advance("analyse"))


def _rework(pool, source, info, plan, config: PipelineConfig, reworks, results: list[ChunkResult], scratch: Path,
            output: FolderStore, progress: Progress) -> list[ChunkResult]:
    """The rework map, on the worker pool: each chunk's missed rungs encoded again, applied to its result."""
    progress.stage("rework", len(reworks))
    by_index = {r.index: r for r in results}
    chunks = {c.index: c for c in plan.chunks}
    jobs = [
        (lambda w=work: stages.apply_rework(by_index[w.index], stages.rework_chunk(
            source, chunks[w.index], info, plan, config, w, scratch=scratch / f"rework_{chunks[w.index].name}",
            output=output), w))
        for work in reworks
    ]
    for redone in stages.run_all(pool, jobs, on_done=lambda result: progress.advance("rework")):
        by_index[redone.index] = redone
    return [by_index[r.index] for r in results]


class _Launches:
    """One x264 thread per encoder while every core has a chunk process; the chunks that start
    when fewer remain than workers get x264's own threading, so that the last ones use the
    cores the others leave (measured: the tail otherwise costs about 3 % of the wall time)."""

    def __init__(self, total: int, workers: int, config: PipelineConfig):
        self._remaining = total
        self._workers = workers
        self._config = config
        self._lock = threading.Lock()

    def config_for_next(self) -> PipelineConfig:
        with self._lock:
            self._remaining -= 1
            tail = self._remaining < self._workers - 1
        if tail and self._config.encoder_threads == 1:
            # x264's own threading (1.5 threads per core). One thread per core takes less memory
            # (a 1080p chunk on 2 cores: 449 MB against 496 MB) but measured worse in the
            # benchmark (wall_ratio 1.021 and cpu_ratio 1.022 against 1.001 and 1.009).
            return self._config.with_changes(encoder_threads=0)
        return self._config


def _host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _on_worker(result: ChunkResult, queued_at: float) -> ChunkResult:
    """The chunk's place on the timeline: which worker thread ran it, and how long it waited
    for one (the pool runs as many chunks at once as there are workers)."""
    return replace(result, worker=f"{_host()} {threading.current_thread().name}",
                   wait_s=max(0.0, result.started_at - queued_at))


def _write_failed_report(folder: Path, manifest: Manifest) -> None:
    """The failed job's page (reason, stage, timeline up to the failure). Best effort: the
    FAILED manifest is what matters, a page that cannot be written must not hide it."""
    try:
        write_report(folder, build_report_data(manifest, {}))
    except Exception:  # noqa: BLE001
        pass


def _summary(info) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "duration_s": round(info.duration_s, 6),
        "width": info.video.display_width,
        "height": info.video.display_height,
        "frame_rate": info.video.frame_rate,
        "has_audio": info.has_audio,
        "video_codec": info.video.codec,
        "container": info.format_name,
        "size_bytes": info.size_bytes,
    }


def _timings(figures: Stages | None) -> dict[str, float]:
    if figures is None:
        return {}
    return {
        "split_s": round(figures.split.wall_s, 3),
        "encode_s": round(figures.encode.span_s, 3) if figures.encode else 0.0,
        "merge_s": round(figures.merge.wall_s, 3),
        "total_s": round(figures.total_s, 3),
    }


def _as_pipeline_error(failure: BaseException) -> PipelineError:
    if isinstance(failure, PipelineError):
        return failure
    if isinstance(failure, KeyboardInterrupt):
        return PipelineError(ErrorCode.INTERNAL_ERROR, "interrupted")
    if isinstance(failure, SystemExit):
        return PipelineError(ErrorCode.INTERNAL_ERROR, "stopped by a signal")
    detail = "".join(traceback.format_exception_only(type(failure), failure)).strip()
    return PipelineError(ErrorCode.INTERNAL_ERROR, f"unexpected error: {detail}")


def _update(store: JobStore | None, job_id: str, **fields: Any) -> None:
    if store is not None:
        store.update(job_id, **fields)
