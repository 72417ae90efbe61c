"""What each Lambda does, between its handler (event parsing) and the core.

No function copies the source: the splitter, the analysers and every encoder read the one
version of the upload that started the job through a short-lived presigned URL (ranged
GETs by ffmpeg). The splitter leaves `jobs/<job_id>/job.json` and `chunks.json` (the
encode Map's items) in the work bucket, and for a fitted ladder `analysis_chunks.json`
(the analysis Map's items); each analyser keeps its chunk's trial points in
`jobs/<job_id>/analysis/`; the ladder function fits the rungs and each chunk's rate
factors from them and rewrites job.json with the fitted plan (the encoders read it); the
encoders write their final segments straight to the output bucket under `<job_id>/` and
keep their facts in `jobs/<job_id>/results/`; for a fitted ladder the ladder function then
plans the rework from those facts (`rework_chunks.json`, the rework Map's items) and each
reworking encoder encodes its chunk's missed rungs again over their segments and keeps the
chunk's applied facts in `jobs/<job_id>/reworked/` (its original facts stay as they were);
the merger reads the facts (a chunk's reworked ones where there are some, and the analyses)
and writes the playlists, the MPD, the thumbnail track and `manifest.json`, last.

Who may change a job (each a conditional write on its record, vtp.aws.jobstore):

* the splitter claims it with a lease and an attempt number, starts the execution
  `<job_id>-<attempt>` and records it; a failure a retry may mend releases the claim and
  is raised (the uploads queue delivers the upload again), an input's fault is handed to
  the failure function;
* the ladder function (a fitted ladder) moves a RUNNING job from stage ``analyse`` to
  ``encode``, and after the encoders to ``rework`` when a chunk-rung is to be encoded again;
  the analysers and the reworking encoders, like the encoders, record a failed chunk's reason;
* the encoders count their chunks while the job is RUNNING (a chunk finished after the job
  failed or was stopped removes the partial output again);
* the merger claims the outputs (``publishing``) and completes the job;
* the failure function fails it, once: from the workflow's catch, from the splitter's
  refusal, or from the execution's own end (stopped, timed out, failed outside a catch),
  then writes the FAILED manifest and sends TranscodeJobFailed.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
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
from typing import Any, Callable, Iterator
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from vtp import contract
from vtp.aws.jobstore import Claim, ClaimRefused, JobNotRunning
from vtp.core import stages
from vtp.core.analysis import ChunkAnalysis
from vtp.core.config import PipelineConfig
from vtp.core.encode import ChunkResult
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobid import job_id_for
from vtp.core.jobstore import JobStatus
from vtp.core.manifest import (
    MANIFEST, REPORT, JobTimeline, Manifest, StageFigures, Stages, epoch_of, failed_manifest, manifest_json,
)
from vtp.core.plan import Chunk, ChunkRework, JobPlan
from vtp.core.probe import SourceInfo
from vtp.core.source import Source, url_source
from vtp.core.storage import ObjectStore
from vtp.core.timeline import job_timeline
from vtp.report.data import build_report_data, segments_from_results
from vtp.report.page import PLAYER_FILES, report_files

JOBS_PREFIX = "jobs"
ANALYSIS_ITEMS = "analysis_chunks.json"  # the analysis Map's items, beside chunks.json
REWORK_ITEMS = contract.REWORK_ITEMS  # the rework Map's items (a fitted ladder, after the encoders)
REWORK_STAGE = "rework"
FAULT_ENV = contract.ENV_FAULT_CHUNK
SCRATCH_ENV = contract.ENV_SCRATCH
URL_LIFETIME_S = 3600  # longer than any function's 15 minutes
DEFAULT_LEASE_S = contract.lease_seconds(contract.DEFAULT_SPLITTER_TIMEOUT_S)
MAX_NAME_RETRIES = 5


class InputError(Exception):
    """The source cannot be transcoded: retrying cannot help (the workflow does not retry it)."""


assert InputError.__name__ == contract.INPUT_ERROR  # the workflow's retriers match the name


class ClaimHeld(Exception):
    """A live splitter holds this job's claim: deliver the event again later (it is not lost)."""


class ExecutionNameTaken(Exception):
    """StartExecution found a closed execution of this name (the job's record was deleted and
    the job is run again): the next attempt number is used."""


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
class Invocation:
    """The Lambda invocation that runs a stage, for the job's timeline and cost (the handlers
    fill it from their context; Powertools tells the cold start)."""

    request_id: str = ""
    memory_mb: int = 0
    cold_start: bool | None = None


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
    split_worker: str = ""  # the splitter's request id, for the timeline
    split_cold_start: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "source": self.source.to_dict(), "info": self.info.to_dict(),
            "plan": self.plan.to_dict(), "config": self.config.to_dict(), "split": self.split.to_dict(),
            "started_at": self.started_at, "split_worker": self.split_worker,
            "split_cold_start": self.split_cold_start,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobDocument":
        return cls(
            job_id=data["job_id"], source=SourceObject.from_dict(data["source"]), info=SourceInfo.from_dict(data["info"]),
            plan=JobPlan.from_dict(data["plan"]), config=PipelineConfig.from_dict(data["config"]),
            split=StageFigures.from_dict(data["split"]), started_at=data["started_at"],
            split_worker=data.get("split_worker", ""), split_cold_start=data.get("split_cold_start"),
        )


def sources_in_event(event: dict[str, Any]) -> list[SourceObject]:
    """The objects of an S3 notification; keys arrive URL-encoded ('+' for spaces).

    Not jobs: other events, S3's test event (no records), and folder markers (keys ending
    in "/", which the console's "Create folder" makes, empty)."""
    found = []
    if not isinstance(event, dict) or not event.get("Records"):
        return found
    for record in S3Event(event).records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        obj = record.s3.get_object
        raw = obj.raw_event
        if unquote_plus(obj.key).endswith("/"):
            continue
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
    start_execution: Callable[..., None],
    reject: Callable[[dict[str, Any]], None],
    execution_status: Callable[[str], str | None] = lambda name: None,
    admit: Callable[[], bool] = lambda: True,
    after_claim: Callable[[Claim], None] = lambda claim: None,
    config: PipelineConfig = PipelineConfig(),
    lease_s: float = DEFAULT_LEASE_S,
    logger=None,
    invocation: Invocation = Invocation(),
) -> dict[str, Any]:
    """The splitter: claim the job, probe, validate, plan, start the workflow.

    It reads only what probing needs (ranged reads of the job's own version) and writes no
    media and nothing to the output bucket. Outcomes (``status``):

    * STARTED: the execution ``<job_id>-<attempt>`` runs the job (or already did: a
      predecessor that died after starting it is found by its name);
    * DUPLICATE: the job is finished or its execution was started: nothing to do;
    * QUEUED: ``admit`` said no (too many jobs running): the caller sends the upload back
      to wait; a record at stage "queued" shows it meanwhile;
    * FAILED: the input's fault (``code`` in ``error``): recorded and handed to ``reject``
      (the failure function writes the FAILED manifest and fails the job).

    ClaimHeld is raised while a live splitter holds the claim; any other failure releases
    the claim (its lease ends now), keeps the error in ``last_error`` and is raised, so
    the delivery is retried and the retry takes the job over.
    """
    job_id = source.job_id
    output = f"{job_id}/"
    current = store.item(job_id)
    if current and (current.get("status") != str(JobStatus.RUNNING) or current.get("execution")):
        return {"job_id": job_id, "status": "DUPLICATE"}
    if not admit():
        store.enqueue(job_id, input=source.uri, output=output)
        return {"job_id": job_id, "status": "QUEUED"}
    try:
        claim = store.claim(job_id, input=source.uri, output=output, lease_s=lease_s)
    except ClaimRefused as refused:
        if refused.reason == "leased":
            holder = refused.item.get("attempts")
            raise ClaimHeld(f"job {job_id} is being split by another delivery (attempt {holder})") from None
        return {"job_id": job_id, "status": "DUPLICATE"}
    after_claim(claim)
    attempt = claim.attempt
    started_at = time.time()
    if claim.takeover:
        # A predecessor may have started its execution and died before recording it.
        for earlier in range(attempt - 1, 0, -1):
            name = contract.execution_name(job_id, earlier)
            if execution_status(name) == "RUNNING":
                store.started(job_id, attempt, name, stage="encode")
                return {"job_id": job_id, "status": "STARTED", "execution": name, "attempt": attempt}
    split = StageFigures()
    try:
        try:
            info, plan, split = stages.inspect(buckets.input.source(source), config)
        except PipelineError as error:
            gone = _source_gone(error, buckets, source)
            if gone is not error:
                raise gone from error
            raise
        split = dataclasses.replace(split, memory_mb=invocation.memory_mb)
        document = JobDocument(job_id, source, info, plan, config, split, started_at, invocation.request_id,
                               invocation.cold_start)
        prefix = job_prefix(job_id)
        buckets.work.put_json(f"{prefix}/job.json", document.to_dict())
        chunks_key = f"{prefix}/chunks.json"
        buckets.work.put_json(chunks_key, [{"chunk": chunk.to_dict()} for chunk in plan.chunks])
        # A fitted ladder: the analysis Map's items; "" (the fixed ladder) sends the workflow
        # straight to the encoders.
        analysis_key = ""
        if stages.needs_analysis(config):
            analysis_key = f"{prefix}/{ANALYSIS_ITEMS}"
            buckets.work.put_json(analysis_key, [{"chunk": chunk.to_dict()} for chunk in stages.analysis_chunks(plan, config)])
        execution_input = {
            "job_id": job_id,
            "work_bucket": buckets.work_bucket_name,
            "chunks_key": chunks_key,
            "analysis_key": analysis_key,
            "source": {"bucket": source.bucket, "key": source.key},
        }
        for _ in range(MAX_NAME_RETRIES):
            name = contract.execution_name(job_id, attempt)
            try:
                start_execution(name=name, execution_input=execution_input)
                break
            except ExecutionNameTaken:
                attempt = store.next_attempt(job_id, attempt, lease_s=lease_s)
        else:
            raise RuntimeError(f"no free execution name for {job_id} after {MAX_NAME_RETRIES} attempts")
        store.started(
            job_id, attempt, name, stage="analyse" if analysis_key else "encode", chunks_total=len(plan.chunks),
            chunks_done=0, timings={"split_s": split.wall_s},
        )
        return {"job_id": job_id, "status": "STARTED", "chunks": len(plan.chunks), "execution": name, "attempt": attempt}
    except Exception as failure:
        error = _pipeline_error(failure)
        if not (isinstance(failure, PipelineError) and error.code.is_input_problem):
            store.release(job_id, attempt, error.to_dict())
            if logger:
                logger.warning("split failed, handed back for a retry",
                               extra={"job_id": job_id, "attempt": attempt, "error": error.to_dict()})
            raise
    # The input's fault: no retry can help. The failure function writes the FAILED manifest
    # (the splitter, which parses untrusted media, cannot write the output bucket).
    figures = Stages(split=split, encode=None, merge=StageFigures(), total_s=time.time() - started_at)
    try:
        store.record_error(job_id, error.to_dict())
        reject({
            "job_id": job_id, "source": {"bucket": source.bucket, "key": source.key}, "stage": "split",
            "rejected": error.to_dict(), "figures": figures.to_dict(),
        })
    except Exception:
        store.release(job_id, attempt, error.to_dict())  # the retry refuses it again, at once
        raise
    if logger:
        logger.warning("input refused", extra={"job_id": job_id, "error": error.to_dict()})
    return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}


def load_job(buckets: Buckets, job_id: str) -> JobDocument:
    return JobDocument.from_dict(buckets.work.get_json(f"{job_prefix(job_id)}/job.json"))


@contextmanager
def _chunk_task(store, buckets: Buckets, job: JobDocument, job_id: str, chunk: Chunk, scratch_name: str,
                record_as: str | None = None) -> Iterator[Path]:
    """One chunk's task (an analyser, an encoder or a rework): a scratch folder, removed after;
    a failure recorded on the job's record (under `record_as`, else the chunk's name), an upload
    gone or replaced named so, and input problems raised as InputError (the workflow does not
    retry them)."""
    work = scratch_dir(scratch_name)
    try:
        try:
            yield work
        except PipelineError as error:
            _raise_for_workflow(_source_gone(error, buckets, job.source))
    except Exception as failure:
        _record_chunk_error(store, job_id, record_as or chunk.name, _pipeline_error(failure))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def analyse_chunk(
    job_id: str, chunk_item: dict[str, Any], *, buckets: Buckets, store, attempt: int = 0,
    invocation: Invocation = Invocation(), dispatched_at: str | None = None,
) -> dict[str, Any]:
    """An analyser (a fitted ladder): a few frames of one chunk, read from the source, trial-
    encoded at every candidate size and rate factor and scored; the trial points are kept
    beside job.json for the fit (a retry overwrites them) and the Map gets a summary.
    `dispatched_at` (ISO time, the Map's $$.State.EnteredTime): for the wait before it ran."""
    chunk = Chunk.from_dict(chunk_item)
    job = load_job(buckets, job_id)
    with _chunk_task(store, buckets, job, job_id, chunk, f"{job_id}-analysis-{chunk.name}") as work:
        analysis = stages.analyse_chunk(
            buckets.input.source(job.source), chunk, job.info, job.config, scratch=work, chunks=len(job.plan.chunks),
        )
    analysis = dataclasses.replace(
        analysis, worker=invocation.request_id,
        figures=dataclasses.replace(analysis.figures, memory_mb=invocation.memory_mb),
    )
    buckets.work.put_json(analysis_key(job_id, chunk), analysis.to_dict())
    dispatched = epoch_of(dispatched_at)
    return {"chunk": chunk.index, "points": len(analysis.points), "frames": analysis.frames,
            "wall_s": round(analysis.figures.wall_s, 3), "attempt": attempt,
            "wait_s": round(max(0.0, analysis.started_at - dispatched), 3) if dispatched is not None else 0.0}


def fit_ladder(job_id: str, *, buckets: Buckets, store, invocation: Invocation = Invocation()) -> dict[str, Any]:
    """The ladder function (after the analysis Map): every chunk's analysis -> the fitted rungs
    and each chunk's rate factors (`stages.fit`), written into job.json, which the encoders
    read (chunks.json holds only the chunks, which the fit does not change).

    Idempotent: a job.json that already holds a fitted plan (a retried fit) is left as it
    is, the first fit's figures included. (Fitting again from it would not do: the fit
    starts from the plan of the split, whose fixed rungs are its floors.)"""
    job_key = f"{job_prefix(job_id)}/job.json"
    job = load_job(buckets, job_id)
    wanted = stages.analysis_chunks(job.plan, job.config)
    analyses, _ = chunk_analyses(buckets, job)
    missing = sorted({c.index for c in wanted} - {a.index for a in analyses})
    if missing:
        raise PipelineError(ErrorCode.INTERNAL_ERROR, f"the analysis of chunks {missing} is missing: nothing to fit")
    fitted = job.plan
    if job.plan.fit is None:
        try:
            fitted = stages.fit(job.info, job.plan, job.config, analyses, memory_mb=invocation.memory_mb,
                                worker=invocation.request_id)
        except PipelineError as error:
            _raise_for_workflow(error)
        buckets.work.put_json(job_key, dataclasses.replace(job, plan=fitted).to_dict())
    _enter_stage(store, job_id, "encode")
    return {"job_id": job_id, "renditions": [r.name for r in fitted.renditions], "analysed": len(analyses),
            "wall_s": round((fitted.fit or {}).get("step", {}).get("wall_s", 0.0), 3)}


def _enter_stage(store, job_id: str, stage: str) -> None:
    """The record's stage, while the job is RUNNING: a job that failed or was stopped meanwhile
    keeps its failed:<stage>."""
    if hasattr(store, "enter_stage"):
        store.enter_stage(job_id, stage)
    else:  # a plain JobStore
        store.update(job_id, stage=stage)


def encode_chunk(
    job_id: str, chunk_item: dict[str, Any], *, buckets: Buckets, store, attempt: int = 0,
    invocation: Invocation = Invocation(), dispatched_at: str | None = None,
) -> dict[str, Any]:
    """The encoder: one chunk, read from the source, decoded once, every rung and the audio,
    final segments written to the job's output prefix. Idempotent: a retry overwrites.
    `dispatched_at` (ISO time, the Map's $$.State.EnteredTime): for the wait before it ran."""
    chunk = Chunk.from_dict(chunk_item)
    _maybe_inject_fault(job_id, chunk, buckets)
    job = load_job(buckets, job_id)
    with _chunk_task(store, buckets, job, job_id, chunk, f"{job_id}-{chunk.name}") as work:
        result = stages.encode_chunk(
            buckets.input.source(job.source), chunk, job.info, job.plan, job.config,
            scratch=work, output=buckets.output, prefix=f"{job_id}/",
        )
    dispatched = epoch_of(dispatched_at)
    result = dataclasses.replace(
        result, attempt=attempt, worker=invocation.request_id, cold_start=invocation.cold_start,
        wait_s=max(0.0, result.started_at - dispatched) if dispatched is not None else 0.0,
        figures=dataclasses.replace(result.figures, memory_mb=invocation.memory_mb),
    )
    # The facts go beside job.json (a retry overwrites them); the Map keeps only a summary.
    buckets.work.put_json(result_key(job_id, chunk), result.to_dict())
    summary = {"chunk": chunk.index, "frames": result.frames_decoded, "wall_s": round(result.figures.wall_s, 3),
               "attempt": attempt}
    if hasattr(store, "add_chunk_done"):
        try:
            store.add_chunk_done(job_id, chunk=chunk.name)  # also clears an earlier attempt's error
        except JobNotRunning:
            # The job failed or was stopped while this chunk ran: the failure path has already
            # removed the partial output, so what this chunk wrote since goes too.
            remove_partial_output(buckets.output, job_id)
            return {**summary, "discarded": True}
    return summary


def plan_rework(job_id: str, *, buckets: Buckets, store, invocation: Invocation = Invocation()) -> dict[str, Any]:
    """The ladder function's second action (a fitted ladder, after the encode Map): the chunks'
    original facts -> the chunk-rungs to encode again (`stages.plan_rework`), written as the
    rework Map's items (`rework_chunks.json`: [{"chunk": {...}, "rework": {...}}, ...]); the
    job moves on to stage rework when there is any. Idempotent: the plan depends only on the
    original facts, which the rework never changes, so a retry writes the same items."""
    job = load_job(buckets, job_id)
    results, _ = chunk_results(buckets, job, reworked=False)
    missing = sorted({c.index for c in job.plan.chunks} - {r.index for r in results})
    if missing:
        raise PipelineError(ErrorCode.INTERNAL_ERROR, f"the facts of chunks {missing} are missing: no rework to plan")
    reworks = stages.plan_rework(job.plan, results, job.config)
    chunks = {chunk.index: chunk for chunk in job.plan.chunks}
    key = f"{job_prefix(job_id)}/{REWORK_ITEMS}"
    buckets.work.put_json(key, [{"chunk": chunks[r.index].to_dict(), "rework": r.to_dict()} for r in reworks])
    if reworks:
        _enter_stage(store, job_id, REWORK_STAGE)
    return {"job_id": job_id, "rework_key": key, "items": len(reworks),
            "chunk_rungs": sum(len(r.rungs) for r in reworks)}


def rework_chunk(
    job_id: str, chunk_item: dict[str, Any], rework_item: dict[str, Any], *, buckets: Buckets, store,
    attempt: int = 0, invocation: Invocation = Invocation(),
) -> dict[str, Any]:
    """A reworking encoder (an item of the rework Map): the chunk's missed rungs encoded again
    (video only) over their segments, then the chunk's original facts with those rungs applied
    (`stages.apply_rework`) kept under its reworked key. The original facts are never touched,
    so a retry applies to the same facts and overwrites the same outputs (idempotent)."""
    chunk = Chunk.from_dict(chunk_item)
    chunk_rework = ChunkRework.from_dict(rework_item)
    job = load_job(buckets, job_id)
    record_as = f"{chunk.name}-{REWORK_STAGE}"  # beside the chunk's encode, which succeeded
    with _chunk_task(store, buckets, job, job_id, chunk, f"{job_id}-rework-{chunk.name}", record_as) as work:
        original = ChunkResult.from_dict(buckets.work.get_json(result_key(job_id, chunk)))
        redo = stages.rework_chunk(
            buckets.input.source(job.source), chunk, job.info, job.plan, job.config, chunk_rework,
            scratch=work, output=buckets.output, prefix=f"{job_id}/",
        )
    redo = dataclasses.replace(redo, figures=dataclasses.replace(redo.figures, memory_mb=invocation.memory_mb))
    applied = stages.apply_rework(original, redo, chunk_rework)
    buckets.work.put_json(reworked_key(job_id, chunk), applied.to_dict())
    summary = {"chunk": chunk.index, "rungs": [r.name for r in chunk_rework.rungs],
               "wall_s": round(redo.figures.wall_s, 3), "attempt": attempt}
    if hasattr(store, "clear_chunk_error"):
        try:
            store.clear_chunk_error(job_id, record_as)  # an earlier attempt's, while the job runs
        except JobNotRunning:
            # The job failed or was stopped while this chunk ran: its partial output goes again.
            remove_partial_output(buckets.output, job_id)
            return {**summary, "discarded": True}
    return summary


def remove_partial_output(output, job_id: str) -> int:
    """Delete everything under <job_id>/ but the manifest and page (the failure path's FAILED ones)."""
    keep = {f"{job_id}/{MANIFEST}", f"{job_id}/{REPORT}"}
    doomed = [key for key in output.keys(f"{job_id}/") if key not in keep]
    if hasattr(output, "delete_keys"):
        output.delete_keys(doomed)
    else:
        for key in doomed:
            output.delete_prefix(key)
    return len(doomed)


def result_key(job_id: str, chunk: Chunk) -> str:
    return f"{job_prefix(job_id)}/results/{chunk.name}.json"


def reworked_key(job_id: str, chunk: Chunk) -> str:
    """A reworked chunk's facts (its original ones, `result_key`, stay as the encoder wrote them)."""
    return f"{job_prefix(job_id)}/reworked/{chunk.name}.json"


def analysis_key(job_id: str, chunk: Chunk) -> str:
    return f"{job_prefix(job_id)}/analysis/{chunk.name}.json"


def _raise_for_workflow(error: PipelineError) -> None:
    """Input problems as InputError (the workflow does not retry them), the rest as they are."""
    if error.code.is_input_problem:
        raise InputError(str(error)) from error
    raise error


def _record_chunk_error(store, job_id: str, chunk: str, error: PipelineError) -> None:
    """Keep a chunk's reason for the failure path: a failed Distributed Map reports only
    States.ExceedToleratedFailureThreshold, not its child's error. Best effort: the
    encoder's own error is what the workflow sees."""
    if not hasattr(store, "set_chunk_error"):
        return
    try:
        store.set_chunk_error(job_id, chunk, error.to_dict())
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


def chunk_results(buckets: Buckets, job: JobDocument, *, reworked: bool = True,
                  workers: int = 16) -> tuple[list[ChunkResult], int]:
    """Every encoder's facts (jobs/<job_id>/results/), read in parallel; and the bytes read.
    With `reworked` (a fitted ladder), a chunk that the rework encoded again gives its applied
    facts (jobs/<job_id>/reworked/) instead: the chunks that rework_chunks.json names.

    (The Distributed Map's own result writer is not used for this: LocalStack's writes no
    result files, and these keys are known without listing.)
    """
    redone: set[int] = set()
    read = 0
    if reworked and job.plan.fit is not None:
        for items in _read_all(buckets, [f"{job_prefix(job.job_id)}/{REWORK_ITEMS}"], workers):
            redone = {int(item["chunk"]["index"]) for item in json.loads(items)}
            read += len(items)
    keys = [(reworked_key if chunk.index in redone else result_key)(job.job_id, chunk) for chunk in job.plan.chunks]
    bodies = _read_all(buckets, keys, workers)
    read += sum(len(body) for body in bodies)
    return [ChunkResult.from_dict(json.loads(body)) for body in bodies], read


def chunk_analyses(buckets: Buckets, job: JobDocument, *, workers: int = 16) -> tuple[list[ChunkAnalysis], int]:
    """Every analyser's trial points (jobs/<job_id>/analysis/), read in parallel; and the bytes read."""
    keys = [analysis_key(job.job_id, chunk) for chunk in stages.analysis_chunks(job.plan, job.config)]
    bodies = _read_all(buckets, keys, workers)
    return [ChunkAnalysis.from_dict(json.loads(body)) for body in bodies], sum(len(body) for body in bodies)


def _read_all(buckets: Buckets, keys: list[str], workers: int) -> list[bytes]:
    """The work bucket's objects at `keys` that exist, in order."""
    def read(key: str) -> bytes | None:
        try:
            return buckets.work.get_bytes(key)
        except KeyError:
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [body for body in pool.map(read, keys) if body is not None]


def merge_and_publish(job_id: str, *, buckets: Buckets, store, invocation: Invocation = Invocation()) -> dict[str, Any]:
    """The merger: the chunks' facts -> checks, playlists, MPD, thumbnails track; manifest.json last."""
    started = time.monotonic()
    job_body = buckets.work.get_bytes(f"{job_prefix(job_id)}/job.json")
    job = JobDocument.from_dict(json.loads(job_body))
    if hasattr(store, "begin_publishing"):
        if not store.begin_publishing(job_id):
            raise JobNotRunning(f"job {job_id} is no longer RUNNING: nothing is published")
    else:
        store.update(job_id, stage="merge")
    # A chunk's reworked facts where the rework encoded some of its rungs again, else its own.
    results, read = chunk_results(buckets, job)
    # A fitted ladder's analyses, for the manifest's analysis figures, timeline and cost.
    analyses, analyses_read = chunk_analyses(buckets, job) if job.plan.fit is not None else ([], 0)
    try:
        manifest = stages.publish(
            job_id=job_id, source_name=job.source.uri, info=job.info, plan=job.plan, config=job.config,
            results=results, store=buckets.output, prefix=f"{job_id}/", split=job.split, started_at=job.started_at,
            # A fitted ladder's merger also reads the rework's items (which chunks were reworked).
            reads=(len(job_body) + read + analyses_read,
                   1 + len(job.plan.chunks) + len(analyses) + (1 if job.plan.fit is not None else 0)),
            merge_started=started, analyses=tuple(analyses),
            where="aws", split_worker=job.split_worker, merge_worker=invocation.request_id,
            merge_memory_mb=invocation.memory_mb, split_cold_start=job.split_cold_start,
            merge_cold_start=invocation.cold_start, report_objects=1 + len(PLAYER_FILES),
        )
    except PipelineError as error:
        _raise_for_workflow(error)
    segments = segments_from_results(results, [r.name for r in job.plan.renditions])
    _put_report(buckets.output, job_id, build_report_data(manifest, segments))
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
    figures: Stages | None = None, when: str = "not_failed",
    publish: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fail the job once: FAILED in the table, partial output removed, the FAILED manifest,
    the TranscodeJobFailed event (``publish``). Idempotent: a job that is already FAILED,
    or that ``when`` does not allow to fail (DynamoJobStore.FAIL_CONDITIONS), is left as it is, but
    a failure whose manifest or event did not go out (the function died half-way) is
    finished. Returns ``changed`` False when there was nothing to do."""
    if not hasattr(store, "fail"):  # a plain JobStore
        _publish_failure(job_id, source_uri, error, buckets=buckets, stage=stage, figures=figures)
        store.update(
            job_id, status=JobStatus.FAILED, stage=f"failed:{stage}",
            error_code=str(error.code), error_message=error.message[:1000],
        )
        return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}
    if not store.fail(job_id, stage=stage, error=error.to_dict(), when=when):
        current = store.item(job_id) or {}
        if current.get("status") != str(JobStatus.FAILED) or current.get("failure_published", True):
            return {"job_id": job_id, "status": current.get("status", "UNKNOWN"), "changed": False}
        # Failed by an invocation that died before its manifest and event: finish its work.
        try:
            error = PipelineError(ErrorCode(current.get("error_code")), current.get("error_message", ""))
        except ValueError:
            pass
        stage = str(current.get("stage", "failed:encode")).removeprefix("failed:")
    _publish_failure(job_id, source_uri, error, buckets=buckets, stage=stage, figures=figures)
    if publish is not None:
        publish({"job_id": job_id, "input": source_uri, "error": error.to_dict(), "failed_stage": stage,
                 "manifest_key": f"{job_id}/{MANIFEST}"})
    store.failure_published(job_id)
    return {"job_id": job_id, "status": "FAILED", "error": error.to_dict()}


def _publish_failure(job_id: str, source_uri: str, error: PipelineError, *, buckets: Buckets, stage: str,
                     figures: Stages | None) -> None:
    buckets.output.delete_prefix(f"{job_id}/")
    manifest = failed_manifest(job_id, source_uri, error, stage=stage, stages=figures,
                               timeline=_timeline_so_far(buckets, job_id), where="aws")
    try:
        _put_report(buckets.output, job_id, build_report_data(manifest, {}))
    except Exception:  # noqa: BLE001 - the page is a courtesy; the FAILED manifest must go out
        pass
    buckets.output.put_bytes(f"{job_id}/{MANIFEST}", manifest_json(manifest).encode(), "application/json")


def _timeline_so_far(buckets: Buckets, job_id: str) -> JobTimeline | None:
    """The split and the chunks that finished, for a failed job's page (none if the split
    never wrote job.json)."""
    try:
        job = load_job(buckets, job_id)
        results, _ = chunk_results(buckets, job)
    except Exception:  # noqa: BLE001 - no job document: failed in the split
        return None
    return job_timeline(started_at=job.started_at, split=job.split, results=results, split_worker=job.split_worker,
                        split_cold_start=job.split_cold_start)


def _put_report(output, job_id: str, data: dict[str, Any]) -> None:
    for path, body in report_files(data).items():
        output.put_bytes(f"{job_id}/{path}", body, _REPORT_TYPES.get(path.rsplit(".", 1)[-1], "application/octet-stream"))


_REPORT_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript"}


def fail_execution(detail: dict[str, Any], *, buckets: Buckets, store, publish=None, forced: bool = False) -> dict[str, Any]:
    """The failure path for an execution that ended FAILED, TIMED_OUT or ABORTED (its
    "Step Functions Execution Status Change" event, or the watchdog's copy of it).

    Only the job's own execution counts, and only a RUNNING job changes: a failure the
    workflow already caught (MarkJobFailed) left the job FAILED with a better reason, and
    a COMPLETE job (say, its completion event could not be sent) is never failed. While the
    merger publishes, a stop does not fail the job (``forced``: the watchdog, long after
    the execution ended, fails it anyway)."""
    name = str(detail.get("name", ""))
    status = str(detail.get("status", ""))
    execution_input: dict[str, Any] = {}
    try:
        parsed = json.loads(detail.get("input") or "{}")
        execution_input = parsed if isinstance(parsed, dict) else {}
    except (TypeError, ValueError):
        pass
    job_id = execution_input.get("job_id") or contract.job_id_of_execution(name)
    current = store.item(job_id)
    if not current:
        return {"job_id": job_id, "status": "UNKNOWN", "changed": False}
    if current.get("execution") and current["execution"] != name:
        return {"job_id": job_id, "status": current.get("status"), "changed": False, "other_execution": current["execution"]}
    if status == "FAILED":
        error = failure_reason({"Error": detail.get("error") or "States.Runtime", "Cause": detail.get("cause") or ""}, job_id, store)
    elif status == "TIMED_OUT":
        error = PipelineError(ErrorCode.INTERNAL_ERROR, f"the workflow execution {name} timed out")
    else:
        error = PipelineError(ErrorCode.INTERNAL_ERROR, f"the workflow execution {name} was {status.lower() or 'stopped'}")
    stage = str(current.get("stage", "encode"))
    stage = stage if stage in ("split", "analyse", "encode", REWORK_STAGE, "merge") else "encode"
    source = execution_input.get("source") or {}
    source_uri = f"s3://{source['bucket']}/{source['key']}" if source.get("bucket") else str(current.get("input", ""))
    return fail_job(job_id, source_uri, error, buckets=buckets, store=store, stage=stage,
                    when="running" if forced else "running_unpublished", publish=publish)


def check_running_jobs(
    store, *, now: float, overdue_after_s: float, repair_after_s: float,
    describe_execution: Callable[[str], dict[str, Any] | None], repair: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The watchdog: every RUNNING job, its age; a job whose execution ended (FAILED,
    TIMED_OUT, ABORTED) more than ``repair_after_s`` ago and is still RUNNING (the
    execution's status event was lost) is handed to the failure path (``repair``, with
    the execution's description in the shape of its status event)."""
    running = store.running()
    ages = [now - _epoch_of(job.get("created_at", "")) for job in running]
    overdue = [job["job_id"] for job, age in zip(running, ages) if age > overdue_after_s]
    repaired = []
    for job in running:
        name = job.get("execution")
        if not name:
            continue
        described = describe_execution(name)
        if not described or described.get("status") not in contract.EXECUTION_FAILURES:
            continue
        stopped = described.get("stopDate")
        stopped_s = stopped.timestamp() if hasattr(stopped, "timestamp") else float(stopped or 0)
        if now - stopped_s < repair_after_s:
            continue
        repair({**described, "name": name})
        repaired.append(job["job_id"])
    return {"running": len(running), "overdue": overdue, "oldest_s": round(max(ages, default=0.0), 1),
            "repaired": repaired}


def _epoch_of(iso: str) -> float:
    found = epoch_of(iso)
    return found if found is not None else time.time()


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
    code = ErrorCode.INTERNAL_ERROR if kind != contract.INPUT_ERROR else ErrorCode.UNSUPPORTED_INPUT
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
    marker = f"{job_prefix(job_id)}/faults/{chunk.name}.json"
    if buckets.work.exists(marker):
        return
    buckets.work.put_json(marker, {"injected": True})
    raise InjectedFault(f"test fault injected into the first attempt of {chunk.name}")
