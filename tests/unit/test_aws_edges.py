"""The AWS side's edges, without media: the DynamoDB job store (moto in-process), S3 events
as the splitter reads them, the job document, presigned URLs, the Distributed Map's result
files, the workflow's errors and the failure path, and the test-only fault injection.

The paths that keep a job from being lost, wedged or mixed are here too, with the probe
and the encode replaced by fakes (the media paths are in test_handlers.py and on
LocalStack): the splitter's claim and lease, takeovers, admission, refusals, execution-level
failures, the encoder's and merger's late work after a failure, the watchdog, the splitter
handler's queue deliveries and `vtp status --aws KEY`."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from vtp.aws.jobstore import DynamoJobStore, stack_output
from vtp.aws.pipeline import (
    FAULT_ENV, Buckets, InjectedFault, JobDocument, SourceObject, SourceReader, error_from_workflow, fail_job,
    chunk_results, failure_reason, sources_in_event, _maybe_inject_fault,
)
from vtp.aws.storage import presigner
from vtp.core import stages
from vtp.core.encode import ChunkResult, SegmentFacts, Thumbnails, TrackFacts
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.core.manifest import StageFigures, Stages
from vtp.core.plan import Chunk, plan_job
from vtp.core.storage import FolderStore

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def table(aws):
    from tests.unit.test_handlers import create_jobs_table

    create_jobs_table(boto3.client("dynamodb"), "jobs")
    return DynamoJobStore("jobs")


# --- the job store --------------------------------------------------------------------------


def test_the_job_store_creates_once_updates_and_lists_newest_first(table):
    table.create(JobRecord(job_id="a", input="s3://in/a.mp4", created_at="2026-11-29T10:00:00Z"))
    table.create(JobRecord(job_id="b", input="s3://in/b.mp4", created_at="2026-11-29T11:00:00Z"))
    with pytest.raises(JobAlreadyExists):
        table.create(JobRecord(job_id="a", input="s3://in/a.mp4"))
    table.update("a", status=JobStatus.COMPLETE, stage="done", timings={"total_s": 12.5, "split_s": 0.25})
    table.update("b", chunks_total=3, chunks_done=0)
    table.add_chunk_done("b")
    table.add_chunk_done("b", chunk="chunk_00001")

    a, b = table.get("a"), table.get("b")
    assert a.status is JobStatus.COMPLETE and a.timings == {"total_s": 12.5, "split_s": 0.25}
    assert a.input == "s3://in/a.mp4" and a.created_at == "2026-11-29T10:00:00Z"
    assert (b.chunks_done, b.chunks_total) == (2, 3)
    assert [r.job_id for r in table.recent()] == ["b", "a"]
    assert [r.job_id for r in table.recent(limit=1)] == ["b"]
    assert table.get("missing") is None


def test_the_job_store_stamps_when_each_stage_began(table):
    table.create(JobRecord(job_id="c", input="s3://in/c.mp4", stage="split"))
    table.update("c", stage="encode")
    table.update("c", stage="done", status=JobStatus.COMPLETE)
    record = table.get("c")
    assert set(record.stage_times) == {"split", "encode", "done"}
    assert record.stage_times["split"] <= record.stage_times["encode"] <= record.stage_times["done"]
    assert record.stage == "done" and record.updated_at >= record.created_at


def test_chunk_errors_are_kept_until_the_chunk_succeeds(table):
    table.create(JobRecord(job_id="d", input="s3://in/d.mp4", stage="split"))
    assert table.chunk_errors("d") == {}
    table.set_chunk_error("d", "chunk_00000", {"code": "TOOL_CRASHED", "message": "ffmpeg was killed"})
    table.set_chunk_error("d", "chunk_00002", {"code": "CORRUPT_INPUT", "message": "truncated"})
    table.add_chunk_done("d", chunk="chunk_00000")  # its retry succeeded
    assert table.chunk_errors("d") == {"chunk_00002": {"code": "CORRUPT_INPUT", "message": "truncated"}}
    assert table.get("d").chunks_done == 1
    # No record, no error, and no stray item made by asking.
    assert table.chunk_errors("nobody") == {} and table.get("nobody") is None
    # A record made before chunk errors were kept (a job in flight across a deploy) still counts.
    table.table.put_item(Item={"job_id": "old", "input": "s3://in/old.mp4", "status": "RUNNING", "chunks_done": 0})
    table.add_chunk_done("old", chunk="chunk_00000")
    assert table.get("old").chunks_done == 1 and table.chunk_errors("old") == {}


def test_the_table_is_found_from_the_stack_outputs(aws, monkeypatch):
    cloudformation = boto3.client("cloudformation")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"JobsTableName": {"Value": "the-jobs-table"}},
    }
    cloudformation.create_stack(StackName="VideoTranscodingPipeline", TemplateBody=json.dumps(template))
    assert stack_output("VideoTranscodingPipeline", "JobsTableName") == "the-jobs-table"
    monkeypatch.delenv("JOBS_TABLE", raising=False)
    assert DynamoJobStore.from_environment().table.name == "the-jobs-table"
    monkeypatch.setenv("JOBS_TABLE", "from-env")
    assert DynamoJobStore.from_environment().table.name == "from-env"
    with pytest.raises(RuntimeError, match="has no output Missing"):
        stack_output("VideoTranscodingPipeline", "Missing")
    with pytest.raises(RuntimeError, match="cannot read stack"):
        stack_output("NoSuchStack", "JobsTableName")


# --- S3 events and the job's identity -------------------------------------------------------


def _record(name: str, key: str, **obj) -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "s3": {"bucket": {"name": "in", "arn": "arn:aws:s3:::in"}, "object": {"key": key, **obj}}}


def test_s3_events_give_decoded_keys_versions_and_etags():
    event = {"Records": [
        _record("ObjectCreated:Put", "my+film+%281%29.mp4", size=10, eTag="e1", versionId="v9", sequencer="01"),
        _record("ObjectRemoved:Delete", "gone.mp4", sequencer="02"),
        _record("ObjectCreated:CompleteMultipartUpload", "big.mp4", size=20, eTag="e2-3", sequencer="03"),
        # A bucket with versioning suspended says "null".
        _record("ObjectCreated:Copy", "a%2Bb+c.mov", size=30, eTag="e3", versionId="null", sequencer="04"),
    ]}
    first, second, third = sources_in_event(event)
    assert (first.bucket, first.key, first.version, first.size, first.versioned) == ("in", "my film (1).mp4", "v9", 10, True)
    assert (second.key, second.version, second.versioned) == ("big.mp4", "e2-3", False)
    assert (third.key, third.version, third.versioned) == ("a+b c.mov", "e3", False)
    assert first.uri == "s3://in/my film (1).mp4"
    assert first.job_id.startswith("my-film-1-") and len({first.job_id, second.job_id, third.job_id}) == 3
    assert sources_in_event({"Records": []}) == []


def test_a_job_is_one_version_of_one_key():
    one = SourceObject("in", "clip.mp4", "v1", 10)
    assert one.job_id == SourceObject("in", "clip.mp4", "v1", 99).job_id  # the same upload, told twice
    assert one.job_id != SourceObject("in", "clip.mp4", "v2", 10).job_id
    assert one.job_id != SourceObject("other", "clip.mp4", "v1", 10).job_id
    assert SourceObject.from_dict({**one.to_dict(), "unknown": 1}) == one
    assert SourceObject.from_dict({"bucket": "in", "key": "k", "version": "e", "size": 1}).versioned


def test_the_job_document_round_trips_through_json(fake_source, keyframes_every, small_config):
    info = fake_source(640, 360, duration_s=5.0, fps="25/1")
    plan = plan_job(info, small_config, keyframes_every((0.0, 1.0, 2.0, 3.0, 4.0)))
    document = JobDocument(
        "clip-0123", SourceObject("in", "clip.mp4", "etag", 123, versioned=False), info, plan, small_config,
        StageFigures(wall_s=0.5, bytes_read=4096, requests=3), 1_796_000_000.25,
    )
    assert JobDocument.from_dict(json.loads(json.dumps(document.to_dict()))) == document
    assert len(plan.chunks) >= 2


# --- presigned URLs ---------------------------------------------------------------------------


def _sigv4(region: str = REGION, endpoint: str | None = None):
    return boto3.client("s3", region_name=region, endpoint_url=endpoint, aws_access_key_id="a",
                        aws_secret_access_key="b", config=Config(signature_version="s3v4"))


def test_presigned_urls_name_the_version_or_pin_the_etag():
    presign = presigner(_sigv4())
    url, headers = presign(SourceObject("in", "dir/my clip.mp4", "v 1", 10), 3600)
    query = parse_qs(urlsplit(url).query)
    assert headers == {} and query["versionId"] == ["v 1"] and query["X-Amz-Expires"] == ["3600"]
    assert urlsplit(url).path.endswith("/dir/my%20clip.mp4")
    url, headers = presign(SourceObject("in", "clip.mp4", "abc-2", 10, versioned=False), 60)
    query = parse_qs(urlsplit(url).query)
    assert headers == {"If-Match": '"abc-2"'} and "versionId" not in query
    assert query["X-Amz-SignedHeaders"] == ["host;if-match"]  # the pin cannot be dropped


def test_the_handlers_presign_with_sigv4_on_the_regional_host(monkeypatch):
    from vtp.handlers.common import s3_client

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    url, headers = presigner(s3_client())(SourceObject("vtp-in", "a.mp4", "etag", 1, versioned=False), 60)
    parts = urlsplit(url)
    assert parts.netloc == "vtp-in.s3.eu-west-1.amazonaws.com"
    assert parse_qs(parts.query)["X-Amz-SignedHeaders"] == ["host;if-match"]
    # A custom endpoint (LocalStack, moto) is used as given, path-style.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    url, _ = presigner(s3_client())(SourceObject("vtp-in", "a.mp4", "v1", 1), 60)
    assert url.startswith("http://127.0.0.1:4566/vtp-in/a.mp4?") and "X-Amz-Signature=" in url


class _Statuses(http.server.BaseHTTPRequestHandler):
    """Answers GET /<status> with that status (and records the headers it got)."""

    seen: list[dict] = []

    def do_GET(self):  # noqa: N802
        _Statuses.seen.append(dict(self.headers))
        status = int(self.path.strip("/").split("?")[0])
        self.send_response(status)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


@pytest.fixture
def status_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Statuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_source_is_unreadable_only_when_its_version_is_gone(status_server):
    obj = SourceObject("in", "k", '"e"', 10, versioned=False)

    def reader(path: str) -> SourceReader:
        return SourceReader(lambda o, lifetime: (f"{status_server}/{path}", {"If-Match": '"e"'}))

    _Statuses.seen.clear()
    assert reader("206").readable(obj)
    assert _Statuses.seen[0]["If-Match"] == '"e"' and _Statuses.seen[0]["Range"] == "bytes=0-0"
    assert not reader("412").readable(obj) and not reader("404").readable(obj)
    assert reader("403").readable(obj) and reader("503").readable(obj)  # not known to be gone: retried
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
    assert SourceReader(lambda o, t: (f"http://127.0.0.1:{closed}/x", {})).readable(obj)
    source = reader("206").source(SourceObject("in", "dir/a.mp4", "v", 42))
    assert source.name == "s3://in/dir/a.mp4" and source.size_bytes == 42
    assert source.protocols == "http,tcp" and dict(source.headers) == {"If-Match": '"e"'}


# --- the Map's result files ----------------------------------------------------------------------


def _result(index: int) -> dict:
    track = TrackFacts(90000, "sha", "avc1.64000d", (SegmentFacts(index * 180000, 50, 1000),), (index + 1) * 180000)
    return ChunkResult(
        index=index, start_s=2.0 * index, end_s=2.0 * (index + 1), video={"180p": track}, audio=None,
        thumbnails=Thumbnails(None, (), 160, 0), poster=None, next_frame=None, frames_decoded=50, preroll_s=0.0,
        figures=StageFigures(wall_s=1.0), attempt=index, worker=f"w{index}",
    ).to_dict()


def _work_buckets(tmp_path: Path) -> Buckets:
    return Buckets(input=None, work=FolderStore(tmp_path / "work"), output=FolderStore(tmp_path / "out"),  # type: ignore[arg-type]
                   work_bucket_name="work")


def test_the_chunks_facts_are_read_by_their_keys(tmp_path):
    from vtp.aws.pipeline import result_key

    buckets = _work_buckets(tmp_path)
    chunks = tuple(Chunk(i, 2.0 * i, 2.0 * (i + 1) if i < 2 else None, None) for i in range(3))
    job = SimpleJob(job_id="job", plan=SimplePlan(chunks))
    for chunk in chunks[::-1]:
        buckets.work.put_json(result_key("job", chunk), _result(chunk.index))
    buckets.work.put_json("jobs/job/results/stray.json", {"not": "a result"})
    results, read = chunk_results(buckets, job)  # type: ignore[arg-type]
    assert [r.index for r in results] == [0, 1, 2]
    assert results[1] == ChunkResult.from_dict(_result(1))
    assert read == sum((tmp_path / "work" / result_key("job", c)).stat().st_size for c in chunks)
    (tmp_path / "work" / result_key("job", chunks[1])).unlink()
    results, _ = chunk_results(buckets, job)  # type: ignore[arg-type]
    assert [r.index for r in results] == [0, 2]  # publishing then refuses: results are missing for chunk 1


class SimplePlan:
    def __init__(self, chunks):
        self.chunks = chunks
        self.fit = None  # a fixed ladder: no rework to look for


class SimpleJob:
    def __init__(self, job_id, plan):
        self.job_id = job_id
        self.plan = plan


# --- the workflow's errors and the failure path -----------------------------------------------------


def _lambda_error(kind: str, message: str) -> dict:
    """A Lambda task's error as Step Functions catches it."""
    return {"Error": kind, "Cause": json.dumps({"errorMessage": message, "errorType": kind, "requestId": "r",
                                                  "stackTrace": ["  File \"/var/task/handler.py\", line 1"]})}


def test_workflow_errors_keep_their_reason_code():
    error = error_from_workflow(_lambda_error("InputError", "CORRUPT_INPUT: the video data is truncated"))
    assert error.code is ErrorCode.CORRUPT_INPUT and error.message == "the video data is truncated"
    error = error_from_workflow(_lambda_error("PipelineError", "ENCODE_FAILED: encoding chunk_00002 failed: x: y"))
    assert error.code is ErrorCode.ENCODE_FAILED and error.message == "encoding chunk_00002 failed: x: y"
    assert error_from_workflow(_lambda_error("InputError", "no code here")).code is ErrorCode.UNSUPPORTED_INPUT
    timeout = error_from_workflow(_lambda_error("Sandbox.Timedout", "Task timed out after 900.00 seconds"))
    assert timeout.code is ErrorCode.INTERNAL_ERROR and timeout.message.startswith("Sandbox.Timedout: Task timed out")
    plain = error_from_workflow({"Error": "States.Timeout", "Cause": "the task timed out"})
    assert plain.code is ErrorCode.INTERNAL_ERROR and plain.message == "States.Timeout: the task timed out"
    for cause in ("null", "[1, 2]", "42", "", "{not json"):
        assert error_from_workflow({"Error": "States.Runtime", "Cause": cause}).code is ErrorCode.INTERNAL_ERROR
    assert error_from_workflow(None).code is ErrorCode.INTERNAL_ERROR
    assert error_from_workflow({}).message.startswith("States.Runtime")
    assert len(error_from_workflow({"Error": "X", "Cause": "y" * 5000}).message) == 1000


class _Store:
    def __init__(self, errors=None, fails: bool = False):
        self.errors, self.fails, self.updates = errors or {}, fails, []

    def chunk_errors(self, job_id):
        if self.fails:
            raise RuntimeError("no access")
        return self.errors

    def update(self, job_id, **fields):
        self.updates.append((job_id, fields))


def test_a_failed_map_takes_the_reason_an_encoder_recorded():
    map_error = {"Error": "States.ExceedToleratedFailureThreshold",
                 "Cause": "The specified tolerated failure threshold was exceeded"}
    errors = {
        "chunk_00003": {"code": "CORRUPT_INPUT", "message": "truncated"},
        "chunk_00001": {"code": "TOOL_CRASHED", "message": "ffmpeg was killed"},
    }
    assert failure_reason(map_error, "j", _Store(errors)).to_dict() == {"code": "CORRUPT_INPUT", "message": "truncated"}
    del errors["chunk_00003"]
    errors["chunk_00002"] = {"code": "ENCODE_FAILED", "message": "x"}
    assert failure_reason(map_error, "j", _Store(errors)).code is ErrorCode.TOOL_CRASHED  # the first chunk's
    fallback = failure_reason(map_error, "j", _Store())
    assert fallback.code is ErrorCode.INTERNAL_ERROR and "ExceedToleratedFailureThreshold" in fallback.message
    assert failure_reason(map_error, "j", _Store(errors, fails=True)).code is ErrorCode.INTERNAL_ERROR
    assert failure_reason(map_error, "j", _Store({"c": {"code": "NEW_CODE", "message": "?"}})).code is ErrorCode.INTERNAL_ERROR
    assert failure_reason(map_error, "j", object()).code is ErrorCode.INTERNAL_ERROR
    # An error that says more than INTERNAL_ERROR is kept as it is.
    merge = _lambda_error("PipelineError", "OUTPUT_CHECK_FAILED: the audio of chunks 0 and 1 does not join")
    assert failure_reason(merge, "j", _Store(errors)).code is ErrorCode.OUTPUT_CHECK_FAILED


def test_failing_a_job_removes_its_output_and_leaves_the_failed_manifest(tmp_path):
    buckets = _work_buckets(tmp_path)
    for key in ("job-1/180p/init.mp4", "job-1/180p/segment_0.m4s", "job-1/master.m3u8", "job-10/manifest.json"):
        buckets.output.put_bytes(key, b"x")
    store = _Store()
    error = PipelineError(ErrorCode.ENCODE_FAILED, "m" * 1500)
    figures = Stages(split=StageFigures(wall_s=1.0, bytes_read=10), encode=None, merge=StageFigures(), total_s=2.0)
    result = fail_job("job-1", "s3://in/a.mp4", error, buckets=buckets, store=store, stage="encode", figures=figures)
    assert result == {"job_id": "job-1", "status": "FAILED", "error": error.to_dict()}
    assert list(buckets.output.keys("job-1")) == ["job-1/manifest.json", "job-1/report.html", "job-10/manifest.json"]
    manifest = buckets.output.get_json("job-1/manifest.json")
    assert manifest["status"] == "FAILED" and manifest["failed_stage"] == "encode" and manifest["input"] == "s3://in/a.mp4"
    assert manifest["error"]["code"] == "ENCODE_FAILED" and manifest["stages"]["split"]["bytes_read"] == 10
    [(job_id, fields)] = store.updates
    assert job_id == "job-1" and fields["status"] is JobStatus.FAILED and fields["stage"] == "failed:encode"
    assert fields["error_code"] == "ENCODE_FAILED" and len(fields["error_message"]) == 1000


# --- the test-only fault --------------------------------------------------------------------------


def test_the_injected_fault_fails_only_the_first_attempt_of_its_chunk(tmp_path, monkeypatch):
    buckets = _work_buckets(tmp_path)
    first, second = Chunk(0, 0.0, 2.0, None), Chunk(1, 2.0, None, 1.9)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    _maybe_inject_fault("job", first, buckets)  # not asked for: nothing
    monkeypatch.setenv(FAULT_ENV, " ")
    _maybe_inject_fault("job", first, buckets)
    monkeypatch.setenv(FAULT_ENV, "0")
    with pytest.raises(InjectedFault, match="chunk_00000"):
        _maybe_inject_fault("job", first, buckets)
    _maybe_inject_fault("job", first, buckets)  # the retry
    _maybe_inject_fault("job", second, buckets)
    with pytest.raises(InjectedFault):
        _maybe_inject_fault("another-job", first, buckets)  # once per job
    assert sorted(buckets.work.keys("jobs/")) == ["jobs/another-job/faults/chunk_00000.json", "jobs/job/faults/chunk_00000.json"]


# --- S3 events that are not jobs -----------------------------------------------------------------


def test_folder_markers_and_s3_test_events_are_not_jobs():
    event = {"Records": [
        _record("ObjectCreated:Put", "incoming/", size=0, eTag="d41d8cd98f00b204e9800998ecf8427e", versionId="v1"),
        _record("ObjectCreated:Put", "incoming%2Fnested/", size=0, eTag="d4", versionId="v2"),
        _record("ObjectCreated:Put", "incoming/empty.mp4", size=0, eTag="d4", versionId="v3"),
    ]}
    [only] = sources_in_event(event)
    assert only.key == "incoming/empty.mp4" and only.size == 0  # an empty file is a job (EMPTY_INPUT)
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-30T12:00:00.000Z",
                  "Bucket": "in", "RequestId": "r", "HostId": "h"}
    assert sources_in_event(test_event) == [] and sources_in_event({}) == [] and sources_in_event([]) == []


# --- the splitter's claim ----------------------------------------------------------------------------


def test_a_claim_is_a_lease_with_an_attempt_number(table):
    from vtp.aws.jobstore import ClaimRefused

    claim = table.claim("j", input="s3://in/a.mp4", output="j/", lease_s=360, now=1000.0)
    assert (claim.attempt, claim.takeover) == (1, False)
    item = table.item("j")
    assert item["status"] == "RUNNING" and item["stage"] == "split" and item["lease_until"] == 1360
    assert item["attempts"] == 1 and "execution" not in item and item["chunk_errors"] == {}
    with pytest.raises(ClaimRefused) as refused:  # a duplicate while the splitter lives
        table.claim("j", input="s3://in/a.mp4", output="j/", lease_s=360, now=1359.0)
    assert refused.value.reason == "leased"
    # The splitter died (Lambda killed it at its timeout, before the lease ended): taken over.
    claim = table.claim("j", input="s3://in/a.mp4", output="j/", lease_s=360, now=1361.0)
    assert (claim.attempt, claim.takeover) == (2, True)
    assert table.item("j")["created_at"] == item["created_at"]  # the same job, one more attempt
    table.started("j", 2, "j-2", stage="encode")
    with pytest.raises(ClaimRefused) as refused:
        table.claim("j", input="s3://in/a.mp4", output="j/", lease_s=360, now=99999.0)
    assert refused.value.reason == "started"
    assert table.fail("j", stage="encode", error={"code": "INTERNAL_ERROR", "message": "x"}, when="running")
    with pytest.raises(ClaimRefused) as refused:
        table.claim("j", input="s3://in/a.mp4", output="j/", lease_s=360, now=99999.0)
    assert refused.value.reason == "finished"


def test_a_released_claim_is_taken_over_at_once_and_keeps_the_error(table):
    table.claim("k", input="s3://in/k.mp4", output="k/", lease_s=360, now=1000.0)
    table.release("k", 1, {"code": "INTERNAL_ERROR", "message": "ThrottlingException: Rate exceeded"})
    item = table.item("k")
    assert item["lease_until"] == 0 and item["last_error"]["message"].startswith("ThrottlingException")
    assert item["last_error"]["attempt"] == 1
    assert table.claim("k", input="s3://in/k.mp4", output="k/", lease_s=360, now=1001.0).attempt == 2
    table.release("k", 1, {"code": "INTERNAL_ERROR", "message": "late"})  # a stale attempt changes nothing
    assert table.item("k")["lease_until"] > 1001


def test_a_queued_upload_has_a_record_but_no_attempt(table):
    assert table.enqueue("q", input="s3://in/q.mp4", output="q/")
    assert not table.enqueue("q", input="s3://in/q.mp4", output="q/")
    item = table.item("q")
    assert (item["status"], item["stage"], item["attempts"]) == ("RUNNING", "queued", 0)
    assert table.claim("q", input="s3://in/q.mp4", output="q/", lease_s=360).attempt == 1


class _Splitter:
    """start_job's collaborators, recorded; inspect is a fake (no media)."""

    def __init__(self):
        self.starts, self.rejected = [], []
        self.fail_starts: list[Exception] = []

    def start_execution(self, *, name, execution_input):
        if self.fail_starts:
            raise self.fail_starts.pop(0)
        self.starts.append({"name": name, "input": execution_input})

    def reject(self, payload):
        self.rejected.append(payload)


@pytest.fixture
def splitting(table, tmp_path, monkeypatch, fake_source, keyframes_every, small_config):
    """start_job over the moto table with a fake probe: a 5 s source in chunks of 2 s."""
    from vtp.aws import pipeline

    def inspect(source, config):
        if source.name.endswith("bad.mp4"):
            raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video data is truncated")
        if source.name.endswith("crash.mp4"):
            raise PipelineError(ErrorCode.TOOL_CRASHED, "ffprobe was killed")
        info = fake_source(640, 360, duration_s=5.0, fps="25/1")
        plan = plan_job(info, config, keyframes_every((0.0, 1.0, 2.0, 3.0, 4.0)))
        return info, plan, StageFigures(wall_s=0.1, bytes_read=100, requests=2)

    monkeypatch.setattr(pipeline.stages, "inspect", inspect)
    buckets = _work_buckets(tmp_path)
    buckets = Buckets(input=SourceReader(lambda obj, lifetime: (f"http://127.0.0.1:9/{obj.key}", {})),
                      work=buckets.work, output=buckets.output, work_bucket_name="work")
    fakes = _Splitter()

    def run(key: str = "clip.mp4", version: str = "v1", **kwargs):
        from vtp.aws.pipeline import start_job

        options = {"buckets": buckets, "store": table, "start_execution": fakes.start_execution,
                   "reject": fakes.reject, "config": small_config, **kwargs}
        return start_job(SourceObject("in", key, version, 1000), **options)

    run.fakes, run.buckets, run.store, run.config = fakes, buckets, table, small_config
    return run


def test_the_splitter_starts_the_attempts_execution_and_records_it(splitting):
    result = splitting()
    job_id = result["job_id"]
    assert result == {"job_id": job_id, "status": "STARTED", "chunks": 3, "execution": f"{job_id}-1", "attempt": 1}
    [start] = splitting.fakes.starts
    assert start["name"] == f"{job_id}-1" and start["input"]["chunks_key"] == f"jobs/{job_id}/chunks.json"
    item = splitting.store.item(job_id)
    # A fitted ladder is analysed first (the analysis Map's items named in the execution input).
    analysed = bool(start["input"]["analysis_key"])
    assert analysed == stages.needs_analysis(splitting.config)
    assert item["execution"] == f"{job_id}-1" and item["stage"] == ("analyse" if analysed else "encode")
    assert item["chunks_total"] == 3
    assert splitting() == {"job_id": job_id, "status": "DUPLICATE"}  # a duplicate event
    assert len(splitting.fakes.starts) == 1


def test_a_live_claim_keeps_a_duplicate_out_without_losing_it(splitting):
    from vtp.aws.jobstore import Claim
    from vtp.aws.pipeline import ClaimHeld

    class Killed(BaseException):
        pass

    def die(claim: Claim):
        raise Killed(claim.attempt)

    with pytest.raises(Killed):  # killed right after its claim (timeout, out of memory)
        splitting(after_claim=die)
    with pytest.raises(ClaimHeld):  # the event again while the lease holds: retried later, not dropped
        splitting()
    assert splitting.fakes.starts == []


def test_a_retry_after_the_lease_takes_the_job_over_and_finishes_it(splitting):
    class Killed(BaseException):
        pass

    def die(claim):
        raise Killed()

    with pytest.raises(Killed):
        splitting(after_claim=die, lease_s=0.2)
    time.sleep(0.3)
    result = splitting(lease_s=360)
    job_id = result["job_id"]
    assert result["status"] == "STARTED" and result["attempt"] == 2 and result["execution"] == f"{job_id}-2"
    assert [s["name"] for s in splitting.fakes.starts] == [f"{job_id}-2"]
    assert splitting.store.item(job_id)["attempts"] == 2


def test_a_takeover_adopts_the_execution_its_predecessor_started(splitting):
    """The predecessor started <job>-1 and died before recording it: no second execution."""
    from vtp.aws.jobstore import Claim

    class Killed(BaseException):
        pass

    def die(claim: Claim):
        raise Killed()

    with pytest.raises(Killed):
        splitting(after_claim=die, lease_s=0.1)
    time.sleep(0.2)
    status = {}
    result = splitting(execution_status=lambda name: status.setdefault(name, "RUNNING"))
    job_id = result["job_id"]
    assert result == {"job_id": job_id, "status": "STARTED", "execution": f"{job_id}-1", "attempt": 2}
    assert list(status) == [f"{job_id}-1"] and splitting.fakes.starts == []
    assert splitting.store.item(job_id)["execution"] == f"{job_id}-1"


def test_transient_errors_release_the_claim_and_are_raised_for_the_retry(splitting):
    from botocore.exceptions import ClientError

    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")
    splitting.fakes.fail_starts.append(throttled)
    with pytest.raises(ClientError):
        splitting()
    [job_id] = [item["job_id"] for item in splitting.store._scan()]
    item = splitting.store.item(job_id)
    assert item["status"] == "RUNNING" and item["lease_until"] == 0 and "execution" not in item
    assert item["last_error"]["message"] == "ClientError: An error occurred (ThrottlingException) when calling the StartExecution operation: Rate exceeded"
    assert splitting.fakes.rejected == []  # not the input's fault: no FAILED job
    # The delivery comes back and takes the job over at once: the job completes its start.
    result = splitting()
    assert result["status"] == "STARTED" and result["attempt"] == 2
    # A tool that crashed is retried the same way, never failed by the splitter.
    from vtp.core.errors import PipelineError as Error

    with pytest.raises(Error):
        splitting(key="crash.mp4")
    assert splitting.fakes.rejected == []


def test_a_name_taken_by_a_closed_execution_moves_on_to_the_next_attempt(splitting):
    from vtp.aws.pipeline import ExecutionNameTaken

    splitting.fakes.fail_starts.append(ExecutionNameTaken("x-1"))
    result = splitting()
    assert result["status"] == "STARTED" and result["execution"] == f"{result['job_id']}-2"
    assert splitting.store.item(result["job_id"])["attempts"] == 2


def test_only_the_inputs_fault_is_refused_and_handed_to_the_failure_function(splitting):
    result = splitting(key="uploads/bad.mp4")
    job_id = result["job_id"]
    assert result == {"job_id": job_id, "status": "FAILED",
                      "error": {"code": "CORRUPT_INPUT", "message": "the video data is truncated"}}
    [payload] = splitting.fakes.rejected
    assert payload["job_id"] == job_id and payload["stage"] == "split" and payload["rejected"] == result["error"]
    assert payload["source"] == {"bucket": "in", "key": "uploads/bad.mp4"}
    assert Stages.from_dict(payload["figures"]).split.wall_s == 0.0
    item = splitting.store.item(job_id)
    assert item["status"] == "RUNNING" and item["last_error"]["code"] == "CORRUPT_INPUT"
    assert list(splitting.buckets.output.keys("")) == []  # the splitter writes no output
    # The failure function's part: FAILED once, the manifest, the event.
    published = []
    from vtp.aws.pipeline import fail_job

    failed = fail_job(job_id, "s3://in/uploads/bad.mp4", PipelineError(ErrorCode.CORRUPT_INPUT, "the video data is truncated"),
                      buckets=splitting.buckets, store=splitting.store, stage="split", when="running", publish=published.append)
    assert failed["status"] == "FAILED" and [p["job_id"] for p in published] == [job_id]
    assert splitting(key="uploads/bad.mp4") == {"job_id": job_id, "status": "DUPLICATE"}


def test_an_upload_waits_while_every_job_slot_is_taken(splitting):
    result = splitting(admit=lambda: False)
    job_id = result["job_id"]
    assert result == {"job_id": job_id, "status": "QUEUED"} and splitting.fakes.starts == []
    assert splitting.store.item(job_id)["stage"] == "queued"
    result = splitting(admit=lambda: True)
    assert result["status"] == "STARTED" and result["attempt"] == 1


# --- the failure path, once ----------------------------------------------------------------------


def _running_job(store, job_id="f", execution="f-1", stage="encode"):
    store.claim(job_id, input=f"s3://in/{job_id}.mp4", output=f"{job_id}/", lease_s=360)
    store.started(job_id, 1, execution, stage=stage, chunks_total=2)


def test_a_job_fails_once_and_its_event_goes_out_once(table, tmp_path):
    buckets = _work_buckets(tmp_path)
    _running_job(table)
    buckets.output.put_bytes("f/360p/segment_0.m4s", b"x")
    published = []
    error = PipelineError(ErrorCode.ENCODE_FAILED, "chunk 1 failed")
    first = fail_job("f", "s3://in/f.mp4", error, buckets=buckets, store=table, stage="encode", publish=published.append)
    assert first == {"job_id": "f", "status": "FAILED", "error": error.to_dict()}
    assert list(buckets.output.keys("f/")) == ["f/manifest.json", "f/report.html"]
    assert published == [{"job_id": "f", "input": "s3://in/f.mp4", "error": error.to_dict(), "failed_stage": "encode",
                          "manifest_key": "f/manifest.json"}]
    item = table.item("f")
    assert item["status"] == "FAILED" and item["failure_published"] is True and item["stage"] == "failed:encode"
    # Again (the execution's own FAILED event after MarkJobFailed, or a retried invoke): nothing changes.
    again = fail_job("f", "s3://in/f.mp4", PipelineError(ErrorCode.INTERNAL_ERROR, "worse reason"), buckets=buckets,
                     store=table, stage="encode", publish=published.append)
    assert again == {"job_id": "f", "status": "FAILED", "changed": False} and len(published) == 1
    assert buckets.output.get_json("f/manifest.json")["error"]["code"] == "ENCODE_FAILED"


def test_a_failure_that_died_half_way_is_finished_by_its_retry(table, tmp_path):
    buckets = _work_buckets(tmp_path)
    _running_job(table)
    error = {"code": "TOOL_CRASHED", "message": "ffmpeg was killed"}
    assert table.fail("f", stage="encode", error=error)  # the record changed, then the function died
    published = []
    result = fail_job("f", "s3://in/f.mp4", PipelineError(ErrorCode.INTERNAL_ERROR, "retry's view"), buckets=buckets,
                      store=table, stage="merge", publish=published.append)
    assert result["error"] == error and published[0]["failed_stage"] == "encode"
    assert buckets.output.get_json("f/manifest.json")["error"] == error
    assert table.item("f")["failure_published"] is True


def _status_event(name: str, status: str, job_id: str | None = None, **extra) -> dict:
    execution_input = json.dumps({"job_id": job_id, "source": {"bucket": "in", "key": f"{job_id}.mp4"}}) if job_id else "{}"
    return {"executionArn": f"arn:aws:states:us-east-1:1:execution:m:{name}", "stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:m",
            "name": name, "status": status, "input": execution_input, "error": None, "cause": None, **extra}


def test_an_execution_that_ends_outside_the_workflows_catch_fails_its_job(table, tmp_path):
    from vtp.aws.pipeline import fail_execution

    buckets = _work_buckets(tmp_path)
    published = []
    for job_id, status, reason in (("s", "ABORTED", "was aborted"), ("t", "TIMED_OUT", "timed out")):
        _running_job(table, job_id, f"{job_id}-1")
        buckets.output.put_bytes(f"{job_id}/360p/segment_0.m4s", b"x")
        result = fail_execution(_status_event(f"{job_id}-1", status, job_id), buckets=buckets, store=table,
                                publish=published.append)
        assert result["status"] == "FAILED" and reason in result["error"]["message"], result
        assert list(buckets.output.keys(f"{job_id}/")) == [f"{job_id}/manifest.json", f"{job_id}/report.html"]
        assert buckets.output.get_json(f"{job_id}/manifest.json")["input"] == f"s3://in/{job_id}.mp4"
    # FAILED outside a catch (say PublishCompletion's retries ran out before the merger... or a
    # failed Map whose reason an encoder recorded): the reason is the workflow's, else the chunk's.
    _running_job(table, "u", "u-1")
    table.set_chunk_error("u", "chunk_00001", {"code": "CORRUPT_INPUT", "message": "truncated"})
    failed = fail_execution(_status_event("u-1", "FAILED", None, error="States.ExceedToleratedFailureThreshold",
                                          cause="too many"), buckets=buckets, store=table, publish=published.append)
    assert failed["error"] == {"code": "CORRUPT_INPUT", "message": "truncated"}
    assert buckets.output.get_json("u/manifest.json")["input"] == "s3://in/u.mp4"  # from the record
    assert [p["job_id"] for p in published] == ["s", "t", "u"]


def test_the_execution_level_path_leaves_finished_publishing_and_other_jobs_alone(table, tmp_path):
    from vtp.aws.pipeline import fail_execution

    buckets = _work_buckets(tmp_path)
    published = []
    # COMPLETE (its completion event could not be sent): never failed.
    _running_job(table, "c", "c-1")
    table.update("c", status=JobStatus.COMPLETE, stage="done")
    assert fail_execution(_status_event("c-1", "FAILED", "c"), buckets=buckets, store=table,
                          publish=published.append)["changed"] is False
    # Another execution than the job's own (an old attempt): ignored.
    _running_job(table, "o", "o-2")
    assert fail_execution(_status_event("o-1", "ABORTED", "o"), buckets=buckets, store=table,
                          publish=published.append)["changed"] is False
    # Stopped while the merger publishes: the merger completes it; the watchdog may force it later.
    _running_job(table, "p", "p-1")
    assert table.begin_publishing("p")
    assert fail_execution(_status_event("p-1", "ABORTED", "p"), buckets=buckets, store=table,
                          publish=published.append)["changed"] is False
    forced = fail_execution(_status_event("p-1", "ABORTED", "p"), buckets=buckets, store=table,
                            publish=published.append, forced=True)
    assert forced["status"] == "FAILED"
    # No record at all.
    assert fail_execution(_status_event("gone-1", "ABORTED"), buckets=buckets, store=table)["status"] == "UNKNOWN"
    assert [p["job_id"] for p in published] == ["p"]
    assert table.item("c")["status"] == "COMPLETE" and table.item("o")["status"] == "RUNNING"


def test_late_work_after_a_failure_publishes_nothing(table, tmp_path, monkeypatch, fake_source, keyframes_every, small_config):
    """An encoder that finishes after the job failed (a stopped execution does not stop a
    running Lambda) removes what it wrote; a merger never starts publishing."""
    from vtp.aws import pipeline
    from vtp.aws.jobstore import JobNotRunning

    work = _work_buckets(tmp_path)
    buckets = Buckets(input=SourceReader(lambda obj, t: ("http://127.0.0.1:9/x", {})), work=work.work,
                      output=work.output, work_bucket_name="work")
    _running_job(table, "late", "late-1")
    info = fake_source(640, 360, duration_s=5.0, fps="25/1")
    plan = plan_job(info, small_config, keyframes_every((0.0, 1.0, 2.0, 3.0, 4.0)))
    document = JobDocument("late", SourceObject("in", "late.mp4", "v", 10), info, plan, small_config, StageFigures(), 0.0)
    buckets.work.put_json("jobs/late/job.json", document.to_dict())

    def encode(source, chunk, info, plan, config, *, scratch, output, prefix):
        output.put_bytes(f"{prefix}180p/segment_{chunk.index}.m4s", b"late")
        return ChunkResult.from_dict(_result(chunk.index))

    monkeypatch.setattr(pipeline.stages, "encode_chunk", encode)
    first, second = plan.chunks[0], plan.chunks[1]
    assert "discarded" not in pipeline.encode_chunk("late", first.to_dict(), buckets=buckets, store=table)
    fail_job("late", "s3://in/late.mp4", PipelineError(ErrorCode.INTERNAL_ERROR, "stopped"), buckets=buckets,
             store=table, stage="encode")
    summary = pipeline.encode_chunk("late", second.to_dict(), buckets=buckets, store=table)
    assert summary["discarded"] is True
    assert list(buckets.output.keys("late/")) == ["late/manifest.json", "late/report.html"]
    with pytest.raises(JobNotRunning):
        pipeline.merge_and_publish("late", buckets=buckets, store=table)
    assert list(buckets.output.keys("late/")) == ["late/manifest.json", "late/report.html"]
    assert buckets.output.get_json("late/manifest.json")["status"] == "FAILED"


# --- the watchdog ------------------------------------------------------------------------------------


def test_the_watchdog_counts_overdue_jobs_and_repairs_those_whose_execution_ended(table):
    from datetime import datetime, timezone

    from vtp.aws.pipeline import check_running_jobs

    now = time.time()
    table.table.put_item(Item={"job_id": "old", "input": "s3://in/old.mp4", "status": "RUNNING", "stage": "encode",
                               "created_at": "2026-01-01T00:00:00Z", "execution": "old-1"})
    _running_job(table, "new", "new-1")
    _running_job(table, "fresh", "fresh-1")
    table.table.put_item(Item={"job_id": "nox", "input": "s3://in/nox.mp4", "status": "RUNNING", "stage": "split",
                               "created_at": "2026-01-01T00:00:00Z", "attempts": 5, "lease_until": 0})
    table.table.put_item(Item={"job_id": "done", "input": "s3://in/done.mp4", "status": "COMPLETE",
                               "created_at": "2026-01-01T00:00:00Z"})
    ended = datetime.fromtimestamp(now - 3600, tz=timezone.utc)
    executions = {
        "old-1": {"status": "RUNNING"},
        "new-1": {"status": "ABORTED", "stopDate": ended, "input": json.dumps({"job_id": "new"})},
        "fresh-1": {"status": "FAILED", "stopDate": datetime.fromtimestamp(now - 5, tz=timezone.utc)},
    }
    repaired = []
    report = check_running_jobs(table, now=now, overdue_after_s=7200, repair_after_s=900,
                                describe_execution=executions.get, repair=repaired.append)
    assert report["running"] == 4 and sorted(report["overdue"]) == ["nox", "old"]
    assert report["oldest_s"] > 7200 and report["repaired"] == ["new"]
    assert repaired[0]["name"] == "new-1" and repaired[0]["status"] == "ABORTED"


def test_the_watchdog_handler_emits_its_metrics_and_hands_repairs_to_the_failure_function(table, monkeypatch, capsys):
    from vtp.handlers import common, watchdog

    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "vtp")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    common.job_store.cache_clear()
    sent = []
    monkeypatch.setattr(watchdog, "describe_execution", lambda name: {"status": "TIMED_OUT", "stopDate": 0, "input": "{}"})
    monkeypatch.setattr(watchdog, "invoke_failure_function", sent.append)
    monkeypatch.setattr(watchdog.metrics, "namespace", "vtp")  # read at import, maybe before this test's environment
    _running_job(table, "w", "w-1")
    try:
        report = watchdog.handler({}, _context())
    finally:
        common.job_store.cache_clear()
    assert report["repaired"] == ["w"]
    [event] = sent
    assert event["source"] == "vtp.watchdog" and event["detail-type"] == "Step Functions Execution Status Change"
    assert event["detail"]["name"] == "w-1" and event["detail"]["status"] == "TIMED_OUT"
    emitted = capsys.readouterr().out
    for metric in ("JobsRunning", "JobsOverdue", "OldestRunningJobAgeSeconds", "JobsRepaired"):
        assert f'"{metric}"' in emitted


class _Context:
    function_name = "vtp-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:vtp-test"
    aws_request_id = "req"
    log_group_name = "/aws/lambda/vtp-test"
    log_stream_name = "s"

    def get_remaining_time_in_millis(self):
        return 60_000


def _context():
    return _Context()


# --- the splitter handler: deliveries from the uploads queue ---------------------------------------------


def _sqs_delivery(*bodies: str) -> dict:
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"h{i}", "body": body, "eventSource": "aws:sqs",
                         "attributes": {"ApproximateReceiveCount": "1"}} for i, body in enumerate(bodies)]}


@pytest.fixture
def splitter_handler(aws, monkeypatch):
    from vtp.handlers import common, splitter

    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    for name, value in {"UPLOADS_QUEUE_URL": queue, "VTP_QUEUE_RETRY_DELAY_S": "10", "JOBS_TABLE": "jobs",
                        "WORK_BUCKET": "work", "OUTPUT_BUCKET": "out", "POWERTOOLS_TRACE_DISABLED": "1",
                        "POWERTOOLS_METRICS_NAMESPACE": "vtp"}.items():
        monkeypatch.setenv(name, value)
    for cached in (common.client, common.buckets, common.job_store):
        cached.cache_clear()
    monkeypatch.setattr(common.metrics, "namespace", "vtp")  # read at import, maybe before this environment
    outcomes: list = []

    def start_job(source, **kwargs):
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return {"job_id": source.job_id, "status": outcome}

    monkeypatch.setattr(splitter, "start_job", start_job)
    yield splitter, outcomes, sqs, queue
    for cached in (common.client, common.buckets, common.job_store):
        cached.cache_clear()


def _notification(key: str) -> str:
    return json.dumps({"Records": [_record("ObjectCreated:Put", key, size=10, eTag="e", versionId="v1")]})


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_queue_deliveries_held_by_a_live_claim_come_back_and_queued_uploads_are_sent_back(splitter_handler):
    from vtp.aws.pipeline import ClaimHeld

    splitter, outcomes, sqs, queue = splitter_handler
    outcomes.extend(["STARTED", ClaimHeld("held"), "QUEUED"])
    body = _notification("uploads/a.mp4")
    result = splitter.handler(_sqs_delivery(_notification("uploads/s.mp4"), _notification("uploads/h.mp4"), body), _context())
    assert [job["status"] for job in result["jobs"]] == ["STARTED", "QUEUED"]
    assert result["batchItemFailures"] == [{"itemIdentifier": "m1"}]  # comes back after the visibility timeout
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"  # the queued upload, delayed
    # S3's test event and a folder marker: nothing to do, nothing to retry.
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})
    result = splitter.handler(_sqs_delivery(test_event, _notification("uploads/folder/")), _context())
    assert result == {"jobs": [{"status": "IGNORED"}, {"status": "IGNORED"}], "batchItemFailures": []}


def test_other_failures_are_raised_so_the_delivery_is_retried(splitter_handler):
    from botocore.exceptions import ClientError

    splitter, outcomes, sqs, queue = splitter_handler
    outcomes.append(ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "busy"}}, "StartExecution"))
    with pytest.raises(ClientError):
        splitter.handler(_sqs_delivery(_notification("uploads/a.mp4")), _context())
    # A direct S3 notification (asynchronous invoke) that must wait is raised for Lambda's retry.
    outcomes.append("QUEUED")
    with pytest.raises(splitter.JobQueued):
        splitter.handler(json.loads(_notification("uploads/b.mp4")), _context())


def test_admission_counts_the_running_executions(aws, monkeypatch):
    from vtp.handlers import common, splitter

    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(name="m", roleArn="arn:aws:iam::123456789012:role/r", definition=json.dumps(
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}))["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", machine)
    common.client.cache_clear()
    try:
        monkeypatch.setenv("VTP_MAX_RUNNING_JOBS", "0")
        assert splitter.admit()
        monkeypatch.setenv("VTP_MAX_RUNNING_JOBS", "2")
        assert splitter.admit()
        for name in ("a-1", "b-1"):
            sfn.start_execution(stateMachineArn=machine, name=name, input="{}")
        assert not splitter.admit()
        assert splitter.execution_status("a-1") == "RUNNING" and splitter.execution_status("zzz-1") is None
        assert common.execution_arn("a-1") == machine.replace(":stateMachine:", ":execution:") + ":a-1"
    finally:
        common.client.cache_clear()


# --- vtp status --aws KEY_OR_ID ---------------------------------------------------------------------------


def test_vtp_status_aws_finds_a_job_by_its_upload_key_and_shows_attempts_and_the_last_error(table, monkeypatch, capsys):
    from vtp import cli

    monkeypatch.setenv("JOBS_TABLE", "jobs")
    monkeypatch.setenv("INPUT_BUCKET", "in")
    monkeypatch.setenv("COLUMNS", "400")  # rich would wrap the table's cells
    table.claim("film-1111", input="s3://in/uploads/film.mp4", output="film-1111/", lease_s=360, now=1000.0)
    table.release("film-1111", 1, {"code": "INTERNAL_ERROR", "message": "ThrottlingException: Rate exceeded"})
    table.claim("film-1111", input="s3://in/uploads/film.mp4", output="film-1111/", lease_s=360)
    table.started("film-1111", 2, "film-1111-2", stage="encode")
    table.claim("film-2222", input="s3://in/uploads/film.mp4", output="film-2222/", lease_s=360)  # the key, overwritten
    table.claim("other-3333", input="s3://in/uploads/other.mp4", output="other-3333/", lease_s=360)

    assert cli.main(["status", "--aws", "uploads/film.mp4", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {item["job_id"] for item in found} == {"film-1111", "film-2222"}
    first = next(item for item in found if item["job_id"] == "film-1111")
    assert first["attempts"] == 2 and first["execution"] == "film-1111-2"
    assert first["last_error"]["message"] == "ThrottlingException: Rate exceeded"
    assert cli.main(["status", "--aws", "s3://in/uploads/other.mp4", "--json"]) == 0
    assert [item["job_id"] for item in json.loads(capsys.readouterr().out)] == ["other-3333"]
    assert cli.main(["status", "--aws", "film-1111"]) == 0
    table_text = capsys.readouterr().out
    assert "film-1111-2" in table_text and "ThrottlingException" in table_text
    assert cli.main(["status", "--aws", "uploads/none.mp4"]) == 1
