"""What each Lambda does, between its handler (event parsing) and the core (paths only).

Work objects of a job live in the work bucket under `jobs/<job_id>/`, in the same layout
as the local workspace; published outputs go to the output bucket under `<job_id>/`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from vtp.core import job as stages
from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobid import job_id_for
from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.core.manifest import MANIFEST, failed_manifest
from vtp.core.plan import Chunk, JobPlan
from vtp.core.probe import SourceInfo
from vtp.core.storage import ObjectStore, upload_folder

JOBS_PREFIX = "jobs"
FAULT_ENV = "VTP_FAIL_FIRST_ATTEMPT_CHUNK"
SCRATCH_ENV = "VTP_SCRATCH"


class InputError(Exception):
    """The source cannot be transcoded: retrying cannot help (the workflow does not retry it)."""


class InjectedFault(Exception):
    """A test-only failure of a chunk's first attempt (VTP_FAIL_FIRST_ATTEMPT_CHUNK)."""


@dataclass(frozen=True)
class SourceObject:
    bucket: str
    key: str
    version: str  # version id, or the ETag where the bucket is not versioned
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def job_id(self) -> str:
        return job_id_for(f"s3://{self.bucket}/{self.key}#{self.version}", self.key)


@dataclass(frozen=True)
class Buckets:
    input: ObjectStore
    work: ObjectStore
    output: ObjectStore
    work_bucket_name: str


def sources_in_event(event: dict[str, Any]) -> list[SourceObject]:
    """The objects of an S3 notification; keys arrive URL-encoded ('+' for spaces)."""
    found = []
    for record in S3Event(event).records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        obj = record.s3.get_object
        raw = obj.raw_event
        version = raw.get("versionId") or str(raw.get("eTag", "")).strip('"') or raw.get("sequencer", "")
        found.append(SourceObject(record.s3.bucket.name, unquote_plus(obj.key), version, int(raw.get("size", 0))))
    return found


def job_prefix(job_id: str) -> str:
    return f"{JOBS_PREFIX}/{job_id}"


def scratch_dir(job_id: str) -> Path:
    root = Path(os.environ.get(SCRATCH_ENV, tempfile.gettempdir()))
    path = root / "vtp" / job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_job(
    source: SourceObject,
    *,
    buckets: Buckets,
    store,
    start_execution,
    config: PipelineConfig = PipelineConfig(),
    logger=None,
) -> dict[str, Any]:
    """The splitter: claim the job, probe, validate, plan, cut pieces, start the workflow.

    A bad input ends here as a FAILED job with its reason (and no retry); a duplicate
    event finds the job already claimed and does nothing.
    """
    job_id = source.job_id
    try:
        store.create(JobRecord(job_id=job_id, input=source.uri, stage="split", output=f"{job_id}/"))
    except JobAlreadyExists:
        return {"job_id": job_id, "status": "DUPLICATE"}
    timings = stages.Timings()
    started = time.monotonic()
    work = scratch_dir(job_id)
    try:
        _check_size_before_download(source, config, work)
        local_source = work / "source"
        buckets.input.download(source.key, local_source)
        with timings.measure("probe_s"):
            try:
                info, plan = stages.prepare(local_source, config)
            except PipelineError as error:
                if error.code.is_input_problem:
                    raise InputError(str(error)) from error
                raise
        workspace = stages.Workspace(work / "workspace")
        prefix = job_prefix(job_id)
        with timings.measure("split_s"):
            # One piece on disk at a time: the source must not have to fit twice.
            for chunk in plan.chunks:
                stages.cut_piece(local_source, chunk, info, workspace)
                buckets.work.upload(workspace.piece(chunk), f"{prefix}/{workspace.piece_key(chunk)}")
                workspace.piece(chunk).unlink()
        buckets.work.put_json(
            f"{prefix}/job.json",
            {
                "job_id": job_id,
                "source": {"bucket": source.bucket, "key": source.key, "version": source.version},
                "info": info.to_dict(),
                "plan": plan.to_dict(),
                "config": config.to_dict(),
                "timings": dict(timings),
                "started_at_epoch_s": time.time() - (time.monotonic() - started),
            },
        )
        chunks_key = f"{prefix}/chunks.json"
        buckets.work.put_json(chunks_key, [{"chunk": chunk.to_dict()} for chunk in plan.chunks])
        execution_input = {
            "job_id": job_id,
            "work_bucket": buckets.work_bucket_name,
            "chunks_key": chunks_key,
            "source": {"bucket": source.bucket, "key": source.key},
        }
        store.update(job_id, stage="encode", chunks_total=len(plan.chunks), chunks_done=0, timings=dict(timings))
        start_execution(name=job_id, execution_input=execution_input)
        return {"job_id": job_id, "status": "STARTED", "chunks": len(plan.chunks)}
    except Exception as failure:
        error = _pipeline_error(failure)
        fail_job(job_id, source.uri, error, buckets=buckets, store=store, timings=timings)
        if logger:
            logger.warning("job failed in the splitter", extra={"job_id": job_id, "error": error.to_dict()})
        return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_size_before_download(source: SourceObject, config: PipelineConfig, scratch: Path) -> None:
    """The event says how big the file is: refuse before fetching what cannot be handled."""
    if source.size == 0:
        raise PipelineError(ErrorCode.EMPTY_INPUT, "the file is empty (0 bytes)")
    if source.size > config.limits.max_bytes:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LARGE, f"the file is {source.size:,} bytes, over the limit of {config.limits.max_bytes:,}"
        )
    free = shutil.disk_usage(scratch).free
    if source.size > free - 64 * 1024**2:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LARGE,
            f"the file is {source.size:,} bytes; the splitter has {free:,} bytes of scratch space",
        )


def load_job(buckets: Buckets, job_id: str) -> tuple[dict[str, Any], SourceInfo, JobPlan, PipelineConfig]:
    data = buckets.work.get_json(f"{job_prefix(job_id)}/job.json")
    return data, SourceInfo.from_dict(data["info"]), JobPlan.from_dict(data["plan"]), PipelineConfig.from_dict(data["config"])


def encode_chunk(job_id: str, chunk_item: dict[str, Any], *, buckets: Buckets, store) -> dict[str, Any]:
    """The encoder: one chunk, decoded once, every rung. Overwrites its outputs (idempotent)."""
    chunk = Chunk.from_dict(chunk_item)
    _maybe_inject_fault(job_id, chunk, buckets)
    _, info, plan, config = load_job(buckets, job_id)
    work = scratch_dir(f"{job_id}-{chunk.name}")
    try:
        workspace = stages.Workspace(work)
        prefix = job_prefix(job_id)
        buckets.work.download(f"{prefix}/{workspace.piece_key(chunk)}", workspace.piece(chunk))
        try:
            stats = stages.encode_chunk(chunk, info, plan, config, workspace)
        except PipelineError as error:
            raise (InputError(str(error)) if error.code.is_input_problem else error) from error
        written = 0
        for rendition in plan.renditions:
            path = workspace.encoded(rendition.name, chunk)
            written += path.stat().st_size
            buckets.work.upload(path, f"{prefix}/{workspace.encoded_key(rendition.name, chunk)}")
        if hasattr(store, "add_chunk_done"):
            store.add_chunk_done(job_id)
        return {"chunk": chunk.index, "bytes": written, "cpu_s": round(stats.cpu_s, 2), "wall_s": round(stats.wall_s, 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def encode_audio(job_id: str, *, buckets: Buckets) -> dict[str, Any]:
    """The audio branch: the source's audio, once, for the whole file."""
    data, info, _, config = load_job(buckets, job_id)
    if not info.has_audio:
        return {"audio": False}
    work = scratch_dir(f"{job_id}-audio")
    try:
        local_source = buckets.input.download(data["source"]["key"], work / "source")
        workspace = stages.Workspace(work / "workspace")
        stats = stages.encode_audio(local_source, info, config, workspace)
        buckets.work.upload(workspace.audio, f"{job_prefix(job_id)}/{stages.AUDIO_FILE}")
        return {"audio": True, "wall_s": round(stats.wall_s, 2) if stats else 0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def merge_and_publish(job_id: str, *, buckets: Buckets, store, workers: int = 2) -> dict[str, Any]:
    """The merger: join, check, package, thumbnails; upload; manifest.json last; COMPLETE."""
    data, info, plan, config = load_job(buckets, job_id)
    work = scratch_dir(f"{job_id}-merge")
    timings = stages.Timings(data.get("timings", {}))
    try:
        workspace = stages.Workspace(work / "workspace")
        prefix = job_prefix(job_id)
        for chunk in plan.chunks:
            for rendition in plan.renditions:
                key = workspace.encoded_key(rendition.name, chunk)
                buckets.work.download(f"{prefix}/{key}", workspace.root / key)
        if info.has_audio:
            buckets.work.download(f"{prefix}/{stages.AUDIO_FILE}", workspace.audio)
        publish_dir = work / "publish"
        store.update(job_id, stage="package")
        manifest = stages.finish(
            job_id=job_id,
            source_name=f"s3://{data['source']['bucket']}/{data['source']['key']}",
            info=info,
            plan=plan,
            config=config,
            workspace=workspace,
            publish_dir=publish_dir,
            timings=timings,
            workers=workers,
        )
        shutil.rmtree(workspace.root, ignore_errors=True)  # room for the upload's bookkeeping
        manifest["timings"]["total_s"] = round(time.time() - data.get("started_at_epoch_s", time.time()), 3)
        buckets.output.delete_prefix(f"{job_id}/")
        upload_folder(buckets.output, publish_dir, job_id)
        buckets.output.put_json(f"{job_id}/{MANIFEST}", manifest)
        store.update(job_id, status=JobStatus.COMPLETE, stage="done", timings=manifest["timings"])
        return {"job_id": job_id, "status": "COMPLETE", "manifest_key": f"{job_id}/{MANIFEST}"}
    except PipelineError as error:
        raise (InputError(str(error)) if error.code.is_input_problem else error) from error
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fail_job(job_id: str, source_uri: str, error: PipelineError, *, buckets: Buckets, store, timings=None) -> dict[str, Any]:
    """Mark the job FAILED, remove anything half-published, write the FAILED manifest."""
    buckets.output.delete_prefix(f"{job_id}/")
    manifest = failed_manifest(job_id, source_uri, error, dict(timings or {}))
    buckets.output.put_json(f"{job_id}/{MANIFEST}", manifest)
    store.update(
        job_id, status=JobStatus.FAILED, stage="failed",
        error_code=str(error.code), error_message=error.message[:1000],
    )
    return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}


def error_from_workflow(error: dict[str, Any] | None) -> PipelineError:
    """The workflow's caught error ({"Error", "Cause"}) as a PipelineError with a reason code."""
    error = error or {}
    kind = error.get("Error", "States.Runtime")
    cause = error.get("Cause", "")
    message = cause
    try:
        parsed = json.loads(cause)
        message = parsed.get("errorMessage", cause)
        kind = parsed.get("errorType", kind)
    except (ValueError, TypeError, AttributeError):
        pass
    for code in ErrorCode:
        if str(message).startswith(f"{code}:"):
            return PipelineError(code, str(message).split(":", 1)[1].strip())
    code = ErrorCode.INTERNAL_ERROR if kind != "InputError" else ErrorCode.UNSUPPORTED_INPUT
    return PipelineError(code, f"{kind}: {message}"[:1000])


def _pipeline_error(failure: Exception) -> PipelineError:
    if isinstance(failure, InputError) and isinstance(failure.__cause__, PipelineError):
        return failure.__cause__
    if isinstance(failure, PipelineError):
        return failure
    return PipelineError(ErrorCode.INTERNAL_ERROR, f"{type(failure).__name__}: {failure}")


def _maybe_inject_fault(job_id: str, chunk: Chunk, buckets: Buckets) -> None:
    wanted = os.environ.get(FAULT_ENV, "").strip()
    if not wanted or int(wanted) != chunk.index:
        return
    marker = f"{job_prefix(job_id)}/faults/{chunk.name}"
    if buckets.work.exists(marker):
        return
    buckets.work.put_json(marker, {"injected": True})
    raise InjectedFault(f"test fault injected into the first attempt of {chunk.name}")
