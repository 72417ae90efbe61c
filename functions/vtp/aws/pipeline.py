"""What each Lambda does, between its handler (event parsing) and the core.

No function copies the source: the splitter and every encoder read the one version of
the upload that started the job through a short-lived presigned URL (ranged GETs by
ffmpeg). The splitter leaves `jobs/<job_id>/job.json` and `chunks.json` (the Map's items)
in the work bucket; the encoders write their final segments straight to the output
bucket under `<job_id>/` and return their facts, which the Distributed Map's result
writer keeps in the work bucket; the merger reads those facts and writes the playlists,
the MPD, the thumbnail track and `manifest.json`, last.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from vtp.core import stages
from vtp.core.config import PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobid import job_id_for
from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.core.manifest import MANIFEST, Manifest, StageFigures, Stages, failed_manifest, manifest_json
from vtp.core.plan import Chunk, JobPlan
from vtp.core.probe import SourceInfo
from vtp.core.source import Source, url_source
from vtp.core.storage import ObjectStore

JOBS_PREFIX = "jobs"
FAULT_ENV = "VTP_FAIL_FIRST_ATTEMPT_CHUNK"
SCRATCH_ENV = "VTP_SCRATCH"
URL_LIFETIME_S = 3600  # longer than any function's 15 minutes


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
    versioned: bool = True

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def job_id(self) -> str:
        return job_id_for(f"s3://{self.bucket}/{self.key}#{self.version}", self.key)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceObject":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


class SourceReader:
    """Presigned URLs of one object version, for ffmpeg to read by ranged GETs."""

    def __init__(self, presign: Callable[[SourceObject, int], tuple[str, dict[str, str]]]):
        self._presign = presign

    def source(self, obj: SourceObject) -> Source:
        url, headers = self._presign(obj, URL_LIFETIME_S)
        return url_source(url, name=obj.uri, size_bytes=obj.size, headers=headers)

    def readable(self, obj: SourceObject) -> bool:
        """Whether the job's version can still be read: False once it was deleted or (in an
        unversioned bucket) overwritten, which no retry can mend. One ranged GET of one byte;
        any other answer (or none) counts as readable, so a passing problem is still retried."""
        url, headers = self._presign(obj, 60)
        request = urllib.request.Request(url, headers={**headers, "Range": "bytes=0-0"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                return True
        except urllib.error.HTTPError as error:
            return error.code not in (404, 412)
        except OSError:
            return True


@dataclass(frozen=True)
class Buckets:
    input: SourceReader
    work: ObjectStore
    output: ObjectStore
    work_bucket_name: str


@dataclass(frozen=True)
class JobDocument:
    """jobs/<job_id>/job.json: what the splitter decided, read by the encoders and the merger."""

    job_id: str
    source: SourceObject
    info: SourceInfo
    plan: JobPlan
    config: PipelineConfig
    split: StageFigures
    started_at: float  # epoch seconds of the claim

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "source": self.source.to_dict(), "info": self.info.to_dict(),
            "plan": self.plan.to_dict(), "config": self.config.to_dict(), "split": self.split.to_dict(),
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobDocument":
        return cls(
            job_id=data["job_id"], source=SourceObject.from_dict(data["source"]), info=SourceInfo.from_dict(data["info"]),
            plan=JobPlan.from_dict(data["plan"]), config=PipelineConfig.from_dict(data["config"]),
            split=StageFigures.from_dict(data["split"]), started_at=data["started_at"],
        )


def sources_in_event(event: dict[str, Any]) -> list[SourceObject]:
    """The objects of an S3 notification; keys arrive URL-encoded ('+' for spaces)."""
    found = []
    for record in S3Event(event).records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        obj = record.s3.get_object
        raw = obj.raw_event
        version_id = raw.get("versionId")
        if version_id and version_id != "null":
            version, versioned = version_id, True
        else:
            version, versioned = str(raw.get("eTag", "")).strip('"') or raw.get("sequencer", ""), False
        found.append(SourceObject(record.s3.bucket.name, unquote_plus(obj.key), version, int(raw.get("size", 0)), versioned))
    return found


def job_prefix(job_id: str) -> str:
    return f"{JOBS_PREFIX}/{job_id}"


def scratch_dir(name: str) -> Path:
    root = Path(os.environ.get(SCRATCH_ENV, tempfile.gettempdir()))
    path = root / "vtp" / name
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
    """The splitter: claim the job, probe, validate, plan, start the workflow.

    It reads only what probing needs (ranged reads of the job's own version) and writes no
    media. A bad input ends here as a FAILED job with its reason (and no retry); a duplicate
    event finds the job already claimed and does nothing.
    """
    job_id = source.job_id
    started_at = time.time()
    try:
        store.create(JobRecord(job_id=job_id, input=source.uri, stage="split", output=f"{job_id}/"))
    except JobAlreadyExists:
        return {"job_id": job_id, "status": "DUPLICATE"}
    split = StageFigures()
    try:
        info, plan, split = stages.inspect(buckets.input.source(source), config)
        document = JobDocument(job_id, source, info, plan, config, split, started_at)
        prefix = job_prefix(job_id)
        buckets.work.put_json(f"{prefix}/job.json", document.to_dict())
        chunks_key = f"{prefix}/chunks.json"
        buckets.work.put_json(chunks_key, [{"chunk": chunk.to_dict()} for chunk in plan.chunks])
        execution_input = {
            "job_id": job_id,
            "work_bucket": buckets.work_bucket_name,
            "chunks_key": chunks_key,
            "source": {"bucket": source.bucket, "key": source.key},
        }
        store.update(job_id, stage="encode", chunks_total=len(plan.chunks), chunks_done=0, timings={"split_s": split.wall_s})
        start_execution(name=job_id, execution_input=execution_input)
        return {"job_id": job_id, "status": "STARTED", "chunks": len(plan.chunks)}
    except Exception as failure:
        error = _source_gone(_pipeline_error(failure), buckets, source)
        stage_figures = Stages(split=split, encode=None, merge=StageFigures(), total_s=time.time() - started_at)
        fail_job(job_id, source.uri, error, buckets=buckets, store=store, stage="split", figures=stage_figures)
        if logger:
            logger.warning("job failed in the splitter", extra={"job_id": job_id, "error": error.to_dict()})
        return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}


def load_job(buckets: Buckets, job_id: str) -> JobDocument:
    return JobDocument.from_dict(buckets.work.get_json(f"{job_prefix(job_id)}/job.json"))


def encode_chunk(job_id: str, chunk_item: dict[str, Any], *, buckets: Buckets, store, attempt: int = 0, worker: str = "") -> dict[str, Any]:
    """The encoder: one chunk, read from the source, decoded once, every rung and the audio,
    final segments written to the job's output prefix. Idempotent: a retry overwrites."""
    chunk = Chunk.from_dict(chunk_item)
    _maybe_inject_fault(job_id, chunk, buckets)
    job = load_job(buckets, job_id)
    work = scratch_dir(f"{job_id}-{chunk.name}")
    try:
        try:
            result = stages.encode_chunk(
                buckets.input.source(job.source), chunk, job.info, job.plan, job.config,
                scratch=work, output=buckets.output, prefix=f"{job_id}/",
            )
        except PipelineError as error:
            _raise_for_workflow(_source_gone(error, buckets, job.source))
    except Exception as failure:
        _record_chunk_error(store, job_id, chunk, _pipeline_error(failure))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = dataclasses.replace(result, attempt=attempt, worker=worker)
    # The facts go beside job.json (a retry overwrites them); the Map keeps only a summary.
    buckets.work.put_json(result_key(job_id, chunk), result.to_dict())
    if hasattr(store, "add_chunk_done"):
        store.add_chunk_done(job_id, chunk=chunk.name)  # also clears an earlier attempt's error
    return {"chunk": chunk.index, "frames": result.frames_decoded, "wall_s": round(result.figures.wall_s, 3),
            "attempt": attempt}


def result_key(job_id: str, chunk: Chunk) -> str:
    return f"{job_prefix(job_id)}/results/{chunk.name}.json"


def _raise_for_workflow(error: PipelineError) -> None:
    """Input problems as InputError (the workflow does not retry them), the rest as they are."""
    if error.code.is_input_problem:
        raise InputError(str(error)) from error
    raise error


def _record_chunk_error(store, job_id: str, chunk: Chunk, error: PipelineError) -> None:
    """Keep a chunk's reason for the failure path: a failed Distributed Map reports only
    States.ExceedToleratedFailureThreshold, not its child's error. Best effort: the
    encoder's own error is what the workflow sees."""
    if not hasattr(store, "set_chunk_error"):
        return
    try:
        store.set_chunk_error(job_id, chunk.name, error.to_dict())
    except Exception:  # noqa: BLE001 - never hide the encoder's own failure
        pass


def _source_gone(error: PipelineError, buckets: Buckets, source: SourceObject) -> PipelineError:
    """A read that failed because the job's version is gone (deleted, or overwritten in an
    unversioned bucket) is INPUT_NOT_FOUND: ffmpeg only says '4XX Client Error'."""
    if error.code in (ErrorCode.EMPTY_INPUT, ErrorCode.INPUT_TOO_LARGE, ErrorCode.INVALID_CONFIG):
        return error
    if buckets.input.readable(source):
        return error
    how = "deleted" if source.versioned else "overwritten or deleted"
    return PipelineError(ErrorCode.INPUT_NOT_FOUND, f"{source.uri} was {how} after the upload that started this job")


def chunk_results(buckets: Buckets, job: JobDocument, *, workers: int = 16) -> tuple[list[ChunkResult], int]:
    """Every encoder's facts (jobs/<job_id>/results/), read in parallel; and the bytes read.

    (The Distributed Map's own result writer is not used for this: LocalStack's writes no
    result files, and these keys are known without listing.)
    """
    keys = [result_key(job.job_id, chunk) for chunk in job.plan.chunks]

    def read(key: str) -> bytes | None:
        try:
            return buckets.work.get_bytes(key)
        except KeyError:
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        bodies = list(pool.map(read, keys))
    results = [ChunkResult.from_dict(json.loads(body)) for body in bodies if body is not None]
    return results, sum(len(body) for body in bodies if body is not None)


def merge_and_publish(job_id: str, *, buckets: Buckets, store) -> dict[str, Any]:
    """The merger: the chunks' facts -> checks, playlists, MPD, thumbnails track; manifest.json last."""
    started = time.monotonic()
    job_body = buckets.work.get_bytes(f"{job_prefix(job_id)}/job.json")
    job = JobDocument.from_dict(json.loads(job_body))
    store.update(job_id, stage="merge")
    results, read = chunk_results(buckets, job)
    try:
        manifest = stages.publish(
            job_id=job_id, source_name=job.source.uri, info=job.info, plan=job.plan, config=job.config,
            results=results, store=buckets.output, prefix=f"{job_id}/", split=job.split, started_at=job.started_at,
            reads=(len(job_body) + read, 1 + len(job.plan.chunks)), merge_started=started,
        )
    except PipelineError as error:
        _raise_for_workflow(error)
    buckets.output.put_bytes(f"{job_id}/{MANIFEST}", manifest_json(manifest).encode(), "application/json")
    store.update(job_id, status=JobStatus.COMPLETE, stage="done", timings=_timings(manifest))
    return {"job_id": job_id, "status": "COMPLETE", "manifest_key": f"{job_id}/{MANIFEST}"}


def _timings(manifest: Manifest) -> dict[str, float]:
    stages_ = manifest.stages
    if stages_ is None:
        return {}
    return {
        "split_s": round(stages_.split.wall_s, 3),
        "encode_s": round(stages_.encode.span_s, 3) if stages_.encode else 0.0,
        "merge_s": round(stages_.merge.wall_s, 3),
        "critical_path_s": round(stages_.critical_path_s, 3),
        "total_s": round(stages_.total_s, 3),
    }


def fail_job(
    job_id: str, source_uri: str, error: PipelineError, *, buckets: Buckets, store, stage: str,
    figures: Stages | None = None,
) -> dict[str, Any]:
    """Mark the job FAILED, remove anything half-published, write the FAILED manifest."""
    buckets.output.delete_prefix(f"{job_id}/")
    manifest = failed_manifest(job_id, source_uri, error, stage=stage, stages=figures)
    buckets.output.put_bytes(f"{job_id}/{MANIFEST}", manifest_json(manifest).encode(), "application/json")
    store.update(
        job_id, status=JobStatus.FAILED, stage=f"failed:{stage}",
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


def failure_reason(workflow_error: dict[str, Any] | None, job_id: str, store) -> PipelineError:
    """Why the workflow failed: its caught error, or, where that says no more than
    INTERNAL_ERROR (a failed Distributed Map), the reason an encoder recorded (an input
    problem first, else the first chunk's)."""
    error = error_from_workflow(workflow_error)
    if error.code is not ErrorCode.INTERNAL_ERROR or not hasattr(store, "chunk_errors"):
        return error
    try:
        recorded = store.chunk_errors(job_id)
        found = [PipelineError(ErrorCode(e["code"]), e["message"]) for _, e in sorted(recorded.items())]
    except Exception:  # noqa: BLE001 - the workflow's own error still says something
        return error
    if not found:
        return error
    return next((e for e in found if e.code.is_input_problem), found[0])


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
