"""The AWS side's edges, without media: the DynamoDB job store (moto in-process), S3 events
as the splitter reads them, the job document, presigned URLs, the Distributed Map's result
files, the workflow's errors and the failure path, and the test-only fault injection."""

from __future__ import annotations

import http.server
import json
import socket
import threading
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
    boto3.client("dynamodb").create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
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
    assert list(buckets.output.keys("job-1")) == ["job-1/manifest.json", "job-10/manifest.json"]
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
    assert sorted(buckets.work.keys("jobs/")) == ["jobs/another-job/faults/chunk_00000", "jobs/job/faults/chunk_00000"]
