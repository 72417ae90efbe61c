"""The AWS side end to end on moto: the splitter, the encoders and the merger called as the
Lambdas and the workflow call them, on a moto server bound to 127.0.0.1 (S3, DynamoDB,
Step Functions), so that ffmpeg reads the upload through real presigned URLs.

Step Functions only records executions here (it runs nothing); the tests play its part:
they read chunks.json, call the encoder per item (a thread pool stands for the Distributed
Map), and write the Map's ResultWriter files (manifest.json + SUCCEEDED_0.json) exactly as
Step Functions lays them out, then call the merger with the ResultWriterDetails. Lambda's
asynchronous invoke of the failure function (a refused input) is played by calling its
handler; EventBridge (TranscodeJobFailed) is moto's.
Assertions are on what lands in the buckets and the table, and on the published outputs
measured against the source (tests.support.checks).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.checks import check_against_source
from vtp.aws.jobstore import DynamoJobStore
from vtp import contract
from vtp.aws.pipeline import (
    Buckets, InjectedFault, InputError, Invocation, encode_chunk, merge_and_publish, sources_in_event, start_job,
)
from vtp.aws.storage import S3Store
from vtp.core.config import LadderMode

REGION = "us-east-1"
INPUT, PLAIN_INPUT, WORK, OUTPUT, TABLE = "vtp-input", "vtp-input-unversioned", "vtp-work", "vtp-output", "vtp-jobs"
ACCOUNT = "123456789012"


@dataclass
class FakeLambdaContext:
    """What powertools reads from Lambda's context."""

    function_name: str = "vtp-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:vtp-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/vtp-test"
    log_stream_name: str = "2026/11/30/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def context(request_id: str | None = None) -> FakeLambdaContext:
    return FakeLambdaContext(aws_request_id=request_id or str(uuid.uuid4()))


# --- the moto server and the deployment it stands for ------------------------------------


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A moto server on 127.0.0.1:<free port> with the stack's buckets, table and state
    machine; the handlers' environment points at it. Stopped at the end of the module."""
    werkzeug = logging.getLogger("werkzeug")  # one line per request otherwise
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    try:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", VTP_FAULT):
            patch.delenv(name, raising=False)
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "vtp-test",
            "POWERTOOLS_SERVICE_NAME": "vtp", "POWERTOOLS_LOG_LEVEL": "WARNING",
            "VTP_SCRATCH": str(tmp_path_factory.mktemp("scratch")),
        }.items():
            patch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        for bucket in (INPUT, PLAIN_INPUT, WORK, OUTPUT):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=INPUT, VersioningConfiguration={"Status": "Enabled"})
        create_jobs_table(boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION), TABLE)
        machine = boto3.client("stepfunctions", endpoint_url=endpoint, region_name=REGION).create_state_machine(
            name="vtp", definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/vtp",
        )
        for name, value in {
            "INPUT_BUCKET": INPUT, "WORK_BUCKET": WORK, "OUTPUT_BUCKET": OUTPUT, "JOBS_TABLE": TABLE,
            "STATE_MACHINE_ARN": machine["stateMachineArn"], "FAILURE_FUNCTION_NAME": "vtp-failure",
            # What the stack gives the splitter: a tiny ladder for these clips.
            "VTP_LADDER": "240p", "VTP_PRESET": "ultrafast", "VTP_GOP_S": "1", "VTP_CHUNK_S": "2", "VTP_SEGMENT_S": "2",
        }.items():
            patch.setenv(name, value)
        _clear_handler_caches()
        from vtp.handlers import common

        # The metrics object reads its namespace when vtp.handlers.common is first imported,
        # which another module's tests may have done before this environment was set.
        patch.setattr(common.metrics, "namespace", "vtp-test")
        yield Aws(endpoint, s3, machine["stateMachineArn"])
    finally:
        _clear_handler_caches()
        patch.undo()
        server.stop()
        werkzeug.setLevel(level)


VTP_FAULT = "VTP_FAIL_FIRST_ATTEMPT_CHUNK"


def create_jobs_table(dynamodb, name: str) -> None:
    """The stack's jobs table: job_id, and the by_input and by_status indexes."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": attribute, "AttributeType": "S"}
                              for attribute in ("job_id", "input", "status", "created_at")],
        GlobalSecondaryIndexes=[
            {"IndexName": index, "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": partition, "KeyType": "HASH"},
                           {"AttributeName": "created_at", "KeyType": "RANGE"}]}
            for index, partition in ((contract.INDEX_BY_INPUT, "input"), (contract.INDEX_BY_STATUS, "status"))
        ],
        BillingMode="PAY_PER_REQUEST",
    )
# An invocation that raises flushes no metrics: powertools warns, as it would on Lambda.
# A hung tool fails its test instead of the session (clip generation has hung under load).
pytestmark = [pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"), pytest.mark.timeout(300)]


def _clear_handler_caches() -> None:
    from vtp.handlers import common, splitter

    common.buckets.cache_clear()
    common.job_store.cache_clear()
    common.client.cache_clear()
    splitter._throttled.clear()


def reject(payload: dict) -> None:
    """What Lambda's asynchronous invoke of the failure function does with a refused input."""
    from vtp.handlers import failure

    failure.handler(payload, context())


@pytest.fixture(autouse=True)
def failure_function_called_directly(monkeypatch):
    from vtp.handlers import splitter

    monkeypatch.setattr(splitter, "invoke_failure_function", reject)


@dataclass
class Aws:
    endpoint: str
    s3: Any
    state_machine: str

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def store(self) -> DynamoJobStore:
        return DynamoJobStore(TABLE, boto3.resource("dynamodb", endpoint_url=self.endpoint, region_name=REGION))

    def buckets(self) -> Buckets:
        from vtp.handlers.common import buckets

        return buckets()  # what the Lambdas use

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def item(self, job_id: str) -> dict:
        return self.store().table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]

    def executions(self) -> list[dict]:
        return self.client("stepfunctions").list_executions(stateMachineArn=self.state_machine)["executions"]

    def execution_input(self, job_id: str, attempt: int = 1) -> dict:
        [execution] = [e for e in self.executions() if e["name"] == f"{job_id}-{attempt}"]
        return json.loads(self.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"])

    def upload(self, path: Path, key: str, bucket: str = INPUT) -> dict:
        return self.s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    def download(self, prefix: str, folder: Path) -> Path:
        for key in self.keys(OUTPUT, prefix):
            target = folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(OUTPUT, key, str(target))
        return folder / prefix.rstrip("/")


def s3_event(bucket: str, key: str, put: dict, size: int, *, name: str = "ObjectCreated:Put") -> dict:
    """The notification S3 sends to the splitter: the key URL-encoded (spaces as '+'), the
    ETag without quotes, versionId only where the bucket is versioned."""
    obj = {"key": quote_plus(key), "size": size, "eTag": put["ETag"].strip('"'), "sequencer": "0055AED6DCD90281E5"}
    if put.get("VersionId"):
        obj["versionId"] = put["VersionId"]
    return {
        "Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
            "eventTime": "2026-11-30T12:00:00.000Z", "eventName": name,
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "203.0.113.7"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "vtp-splitter",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
                "object": obj,
            },
        }]
    }


class Recording:
    """An ObjectStore that records which keys were read through it."""

    def __init__(self, store: S3Store):
        self._store = store
        self.read: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def get_json(self, key: str):
        self.read.append(key)
        return self._store.get_json(key)

    def get_bytes(self, key: str):
        self.read.append(key)
        return self._store.get_bytes(key)

    def download(self, key: str, path: Path):
        self.read.append(key)
        return self._store.download(key, path)


class NoSourceReads:
    def source(self, obj):
        raise AssertionError(f"the merger opened the source {obj.uri}")


# --- one job through the splitter, the encoders and the merger ------------------------------


@dataclass
class Published:
    job_id: str
    clip: Path
    key: str
    event: dict
    started: dict
    starts: list[dict]
    items: list[dict]
    outputs: list[dict]
    results: list[dict]
    merged: dict
    merge_reads: list[str]
    folder: Path
    manifest: dict


PADDING = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def padded(clip, tmp_path_factory) -> Path:
    """The "irregular" clip (mp4, audio, keyframes off every grid) with a 16 MiB `free` box
    after its media, which no reader needs: a stand-in for a large upload, whose size the
    splitter's reads must not follow (on a few-hundred-KB clip, ffmpeg's read-ahead and the
    probes' overlap add up to about the whole file)."""
    path = tmp_path_factory.mktemp("padded") / "irregular_padded.mp4"
    path.write_bytes(clip("irregular").read_bytes() + (PADDING + 8).to_bytes(4, "big") + b"free" + bytes(PADDING))
    return path


@pytest.fixture(scope="module")
def published(aws, padded, clip, small_config, tmp_path_factory) -> Published:
    source = padded
    key = "uploads/My holiday (1).mp4"
    put = aws.upload(source, key)
    event = s3_event(INPUT, key, put, source.stat().st_size)
    from vtp.handlers.splitter import start_execution

    starts: list[dict] = []

    def record_start(*, name: str, execution_input: dict) -> None:
        starts.append({"name": name, "input": execution_input})
        start_execution(name=name, execution_input=execution_input)

    buckets, store = aws.buckets(), aws.store()
    [obj] = sources_in_event(event)
    # The fixed ladder (the fitted one's analysis Map and fit: test_aws_analysis.py).
    fixed = small_config.with_changes(ladder_mode=LadderMode.FIXED)
    started = start_job(obj, buckets=buckets, store=store, start_execution=record_start, reject=reject, config=fixed,
                        invocation=Invocation("splitter-1", 1769, True))
    job_id = started["job_id"]

    # A second upload to the same key: the job keeps reading its own version.
    aws.upload(clip("silent"), key)

    items = aws.get_json(WORK, starts[0]["input"]["chunks_key"])

    def encode(item: dict) -> dict:
        return encode_chunk(job_id, item["chunk"], buckets=buckets, store=store, attempt=0,
                            invocation=Invocation(f"worker-{item['chunk']['index']}", 3008, item["chunk"]["index"] == 0),
                            dispatched_at=datetime.fromtimestamp(time.time() - 0.5, UTC).isoformat().replace("+00:00", "Z"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = list(pool.map(encode, items))
    results = [aws.get_json(WORK, f"jobs/{job_id}/results/chunk_{i:05d}.json") for i in range(len(items))]

    work, output = Recording(buckets.work), Recording(buckets.output)
    merger_buckets = Buckets(input=NoSourceReads(), work=work, output=output, work_bucket_name=WORK)  # type: ignore[arg-type]
    merged = merge_and_publish(job_id, buckets=merger_buckets, store=store, invocation=Invocation("merger-1", 1024, True))

    folder = aws.download(f"{job_id}/", tmp_path_factory.mktemp("published"))
    manifest = check_against_source(folder, source)
    return Published(job_id, source, key, event, started, starts, items, outputs, results, merged,
                     work.read + output.read, folder, manifest)


def test_the_splitter_claims_plans_and_starts_one_named_execution(aws, published):
    job_id = published.job_id
    assert published.started == {"job_id": job_id, "status": "STARTED", "chunks": len(published.items),
                                 "execution": f"{job_id}-1", "attempt": 1}
    assert job_id.startswith("my-holiday-1-") and len(published.items) == 3
    [start] = published.starts
    assert start["name"] == f"{job_id}-1"
    assert start["input"] == {
        "job_id": job_id, "work_bucket": WORK, "chunks_key": f"jobs/{job_id}/chunks.json", "analysis_key": "",
        "source": {"bucket": INPUT, "key": published.key},
    }
    assert aws.execution_input(job_id) == start["input"]
    assert [item["chunk"]["index"] for item in published.items] == [0, 1, 2]
    job = aws.get_json(WORK, f"jobs/{job_id}/job.json")
    assert job["job_id"] == job_id and job["source"]["key"] == published.key and job["source"]["versioned"]
    assert job["source"]["version"] == published.event["Records"][0]["s3"]["object"]["versionId"]


def test_the_whole_job_publishes_a_correct_ladder(aws, published):
    job_id = published.job_id
    assert published.merged == {"job_id": job_id, "status": "COMPLETE", "manifest_key": f"{job_id}/manifest.json"}
    manifest = published.manifest  # check_against_source passed on the downloaded folder
    assert manifest["job_id"] == job_id and manifest["input"] == f"s3://{INPUT}/{published.key}"
    assert [r["name"] for r in manifest["renditions"]] == ["180p", "120p"] and manifest["chunks"] == 3
    item = aws.item(job_id)
    assert item["status"] == "COMPLETE" and item["stage"] == "done"
    assert item["chunks_done"] == item["chunks_total"] == 3
    assert set(item["stage_times"]) == {"split", "encode", "merge", "done"}
    assert aws.s3.head_object(Bucket=OUTPUT, Key=f"{job_id}/master.m3u8")["ContentType"] == "application/vnd.apple.mpegurl"
    assert aws.s3.head_object(Bucket=OUTPUT, Key=f"{job_id}/manifest.mpd")["ContentType"] == "application/dash+xml"
    segment = next(k for k in aws.keys(OUTPUT, f"{job_id}/180p/") if k.endswith(".m4s"))
    assert aws.s3.head_object(Bucket=OUTPUT, Key=segment)["ContentType"] == "video/iso.segment"


def test_the_merger_publishes_the_timeline_the_cost_and_the_report_page(aws, published):
    job_id = published.job_id
    manifest = published.manifest
    bars = manifest["timeline"]["bars"]
    assert [b["stage"] for b in bars] == ["split", "encode", "encode", "encode", "merge"]
    assert [b["worker"] for b in bars[1:4]] == ["worker-0", "worker-1", "worker-2"]
    assert bars[-1]["worker"] == "merger-1" and bars[-1]["memory_mb"] == 1024
    assert bars[0]["worker"] == "splitter-1" and bars[0]["memory_mb"] == 1769 and bars[0]["cold_start"] is True
    assert bars[-1]["cold_start"] is True
    assert bars[0]["critical"] and bars[-1]["critical"]
    assert sum(b["critical"] for b in bars[1:4]) == 1, "the encoder that ended last is on the critical path"
    assert all(0 <= b["start_s"] <= b["end_s"] for b in bars)
    cost = manifest["cost"]
    assert manifest["where"] == "aws" and cost["where"] == "aws" and cost["cpu_s"] is None
    assert cost["total_usd"] == pytest.approx(sum(line["usd"] for line in cost["lines"]), abs=1e-7)
    assert cost["total_usd"] > 0 and cost["mediaconvert_usd"] > 0
    encoders = next(line for line in cost["lines"] if line["item"] == "Lambda encoders")
    chunk_seconds = sum(r["figures"]["wall_s"] for r in published.results)
    assert encoders["quantity"] == pytest.approx(chunk_seconds * 3008 / 1024, rel=1e-3)
    assert manifest["outputs"]["report"] == "report.html"
    page = aws.s3.get_object(Bucket=OUTPUT, Key=f"{job_id}/report.html")
    assert page["ContentType"].startswith("text/html") and job_id in page["Body"].read().decode()


def test_the_encoders_keep_their_facts_in_the_work_bucket_and_return_a_summary(published):
    for item, output, result in zip(published.items, published.outputs, published.results):
        index = item["chunk"]["index"]
        assert output == {"chunk": index, "frames": result["frames_decoded"], "wall_s": output["wall_s"], "attempt": 0}
        assert result["index"] == index and result["worker"] == f"worker-{index}" and result["attempt"] == 0
        assert result["cold_start"] is (index == 0) and result["figures"]["memory_mb"] == 3008
        assert result["wait_s"] >= 0.5  # dispatched half a second before it was called
        assert set(result["video"]) == {"180p", "120p"} and result["audio"] is not None
        assert result["figures"]["bytes_read"] > 0 and result["figures"]["bytes_written"] > 0
        assert len(json.dumps(output)) < 200  # the Map's payloads stay small for any number of chunks


def test_only_json_in_the_work_bucket_and_little_read_by_the_splitter(aws, published):
    work = aws.keys(WORK)
    assert work and all(key.endswith(".json") for key in work), work
    stages = published.manifest["stages"]
    size = published.clip.stat().st_size
    # Ranged reads of what probing needs, never a download of the object.
    assert 0 < stages["split"]["bytes_read"] < size / 8, (stages["split"], size)
    assert stages["split"]["requests"] >= 3
    # Each encoder reads its own range (with pre-roll and ffmpeg's read-ahead), none the object.
    assert stages["encode"]["chunks"] == 3
    assert all(0 < result["figures"]["bytes_read"] < size / 8 for result in published.results)
    assert stages["encode"]["sum"]["bytes_read"] < size / 2, stages["encode"]


def test_the_merger_reads_only_the_job_and_the_chunks_facts(published):
    job_id = published.job_id
    expected = {f"jobs/{job_id}/job.json"} | {f"jobs/{job_id}/results/chunk_{i:05d}.json" for i in range(3)}
    assert set(published.merge_reads) == expected
    merge = published.manifest["stages"]["merge"]
    facts = sum(len(json.dumps(r)) for r in published.results)
    assert 0 < merge["bytes_read"] < 4 * facts and merge["bytes_written"] > 0 and merge["requests"] >= 4


def test_a_duplicate_event_starts_nothing_more(aws, published, small_config):
    before = aws.executions()
    [obj] = sources_in_event(published.event)
    again = start_job(obj, buckets=aws.buckets(), store=aws.store(), start_execution=_no_start, reject=_no_reject,
                      config=small_config)
    assert again == {"job_id": published.job_id, "status": "DUPLICATE"}
    from vtp.handlers import splitter

    assert splitter.handler(published.event, context()) == {"jobs": [{"job_id": published.job_id, "status": "DUPLICATE"}]}
    # The same notification delivered by the uploads queue (the deployed trigger).
    delivery = sqs_event(published.event)
    assert splitter.handler(delivery, context()) == {
        "jobs": [{"job_id": published.job_id, "status": "DUPLICATE"}], "batchItemFailures": []}
    assert aws.executions() == before
    item = aws.item(published.job_id)
    assert item["status"] == "COMPLETE" and item["attempts"] == 1 and item["execution"] == f"{published.job_id}-1"


def _no_start(**kwargs):
    raise AssertionError(f"a workflow was started: {kwargs}")


def _no_reject(payload):
    raise AssertionError(f"an input was refused: {payload}")


def sqs_event(s3_notification: dict, receive_count: int = 1) -> dict:
    """The uploads queue's delivery of an S3 notification to the splitter (event source mapping)."""
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "handle", "body": json.dumps(s3_notification),
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1796000000000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:uploads", "awsRegion": REGION,
    }]}


# --- refused uploads ------------------------------------------------------------------------


def _only_the_failed_manifest(aws: Aws, job_id: str, code: str) -> dict:
    assert aws.keys(OUTPUT, f"{job_id}/") == [f"{job_id}/manifest.json", f"{job_id}/report.html"]
    assert aws.keys(WORK, f"jobs/{job_id}/") == []
    assert not [e for e in aws.executions() if e["name"].startswith(job_id)]
    manifest = aws.get_json(OUTPUT, f"{job_id}/manifest.json")
    assert manifest["status"] == "FAILED" and manifest["error"]["code"] == code and manifest["failed_stage"] == "split"
    item = aws.item(job_id)
    assert item["status"] == "FAILED" and item["error_code"] == code and item["stage"] == "failed:split"
    assert item["error_message"] == manifest["error"]["message"] and item["failure_published"] is True
    assert item["last_error"]["code"] == code  # the splitter's record, before the failure function
    return manifest


def test_a_text_file_fails_in_the_splitter_with_its_reason(aws, tmp_path, small_config):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video, just some words\n" * 50)
    put = aws.upload(bad, "uploads/notes.mp4")
    [obj] = sources_in_event(s3_event(INPUT, "uploads/notes.mp4", put, bad.stat().st_size))
    result = start_job(obj, buckets=aws.buckets(), store=aws.store(), start_execution=_no_start, reject=reject,
                       config=small_config)
    assert result["status"] == "FAILED" and result["error"]["code"] == "UNSUPPORTED_INPUT"
    assert result["error"]["message"].startswith("not a media file ffmpeg can read")
    manifest = _only_the_failed_manifest(aws, result["job_id"], result["error"]["code"])
    assert manifest["error"] == result["error"] and manifest["input"] == f"s3://{INPUT}/uploads/notes.mp4"


def test_an_empty_upload_is_refused_before_any_read(aws, tmp_path, small_config):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    put = aws.upload(empty, "uploads/empty.mp4")
    [obj] = sources_in_event(s3_event(INPUT, "uploads/empty.mp4", put, 0))
    result = start_job(obj, buckets=aws.buckets(), store=aws.store(), start_execution=_no_start, reject=reject,
                       config=small_config)
    assert result["status"] == "FAILED" and result["error"]["code"] == "EMPTY_INPUT"
    manifest = _only_the_failed_manifest(aws, result["job_id"], "EMPTY_INPUT")
    assert manifest["stages"]["split"]["bytes_read"] == 0 and manifest["stages"]["split"]["requests"] == 0


# --- an unversioned bucket: the ETag pinned with If-Match -------------------------------------


def test_an_unversioned_upload_is_read_by_its_etag_and_an_overwrite_fails_the_old_job(aws, clip, small_config):
    from vtp.handlers import failure

    source = clip("vfr")
    put = aws.upload(source, "vfr clip.mp4", bucket=PLAIN_INPUT)
    event = s3_event(PLAIN_INPUT, "vfr clip.mp4", put, source.stat().st_size)
    [obj] = sources_in_event(event)
    assert not obj.versioned and obj.version == put["ETag"].strip('"')
    buckets, store = aws.buckets(), aws.store()
    starts = []
    result = start_job(obj, buckets=buckets, store=store, config=small_config, reject=_no_reject,
                       start_execution=lambda **kwargs: starts.append(kwargs))
    assert result["status"] == "STARTED" and len(starts) == 1
    job_id = result["job_id"]
    items = aws.get_json(WORK, f"jobs/{job_id}/chunks.json")
    assert len(items) == 2

    # The URL pins the ETag with an If-Match header, signed (SigV4) so that it cannot be left out.
    reader = buckets.input.source(obj)
    assert dict(reader.headers) == {"If-Match": put["ETag"]}
    assert "X-Amz-SignedHeaders=host%3Bif-match" in reader.url and "versionId" not in reader.url
    assert encode_chunk(job_id, items[0]["chunk"], buckets=buckets, store=store)["chunk"] == 0

    # A new upload to the same key: the old job's reads now fail (412), they never mix uploads.
    aws.upload(clip("silent"), "vfr clip.mp4", bucket=PLAIN_INPUT)
    with pytest.raises(InputError) as raised:  # an input problem: the workflow does not retry it
        encode_chunk(job_id, items[1]["chunk"], buckets=buckets, store=store)
    assert str(raised.value).startswith("INPUT_NOT_FOUND: ") and "overwritten" in str(raised.value)
    assert store.chunk_errors(job_id) == {"chunk_00001": {"code": "INPUT_NOT_FOUND", "message": raised.value.__cause__.message}}
    assert not [k for k in aws.keys(OUTPUT, f"{job_id}/") if "/segment_" in k and not k.endswith("_0.m4s")]

    # The failed Map says only that too many children failed; the job still gets the chunk's reason.
    state = {"job_id": job_id, "work_bucket": WORK, "chunks_key": f"jobs/{job_id}/chunks.json",
             "source": {"bucket": PLAIN_INPUT, "key": "vfr clip.mp4"}}
    map_error = {"Error": "States.ExceedToleratedFailureThreshold",
                 "Cause": "The specified tolerated failure threshold was exceeded"}
    failed = failure.handler({**state, "error": map_error}, context())
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "INPUT_NOT_FOUND"
    assert aws.keys(OUTPUT, f"{job_id}/") == [f"{job_id}/manifest.json", f"{job_id}/report.html"]
    assert aws.get_json(OUTPUT, f"{job_id}/manifest.json")["failed_stage"] == "encode"
    item = aws.item(job_id)
    assert item["error_code"] == "INPUT_NOT_FOUND" and item["stage"] == "failed:encode"


def test_an_upload_gone_before_the_splitter_reads_it_is_input_not_found(aws, clip, small_config):
    source = clip("silent")
    # Unversioned, overwritten between the event and the probe.
    put = aws.upload(source, "replaced.mp4", bucket=PLAIN_INPUT)
    event = s3_event(PLAIN_INPUT, "replaced.mp4", put, source.stat().st_size)
    aws.upload(clip("vfr"), "replaced.mp4", bucket=PLAIN_INPUT)
    # Versioned, that version deleted.
    put_versioned = aws.upload(source, "deleted.mp4")
    versioned_event = s3_event(INPUT, "deleted.mp4", put_versioned, source.stat().st_size)
    aws.s3.delete_object(Bucket=INPUT, Key="deleted.mp4", VersionId=put_versioned["VersionId"])
    for event, how in ((event, "overwritten or deleted"), (versioned_event, "deleted")):
        [obj] = sources_in_event(event)
        result = start_job(obj, buckets=aws.buckets(), store=aws.store(), start_execution=_no_start, reject=reject,
                       config=small_config)
        assert result["status"] == "FAILED" and result["error"]["code"] == "INPUT_NOT_FOUND", result
        assert result["error"]["message"] == f"{obj.uri} was {how} after the upload that started this job"
        _only_the_failed_manifest(aws, result["job_id"], "INPUT_NOT_FOUND")


# --- the Lambda handlers themselves -------------------------------------------------------------


def test_the_handlers_run_a_job_with_a_retried_chunk_and_then_fail_it(aws, clip, tmp_path, monkeypatch):
    """Splitter, encoder (chunk 0's first attempt fails on purpose, its retry succeeds),
    merger and failure handlers with the events the S3 notification and the workflow send."""
    from vtp.handlers import encoder, failure, merger, splitter

    monkeypatch.setenv(VTP_FAULT, "0")
    source = clip("mpg")
    key = "handlers/an mpeg clip.mpg"
    put = aws.upload(source, key)
    started = splitter.handler(s3_event(INPUT, key, put, source.stat().st_size), context())
    [job] = started["jobs"]
    assert job["status"] == "STARTED" and job["chunks"] >= 2
    job_id = job["job_id"]
    state = aws.execution_input(job_id)
    assert state["chunks_key"] == f"jobs/{job_id}/chunks.json" and state["source"] == {"bucket": INPUT, "key": key}
    item = aws.item(job_id)
    assert item["status"] == "RUNNING" and item["stage"] == "encode" and item["chunks_total"] == job["chunks"]
    settings = aws.get_json(WORK, f"jobs/{job_id}/job.json")["config"]
    assert [rung["name"] for rung in settings["ladder"]] == ["240p"] and settings["preset"] == "ultrafast"

    items = aws.get_json(WORK, state["chunks_key"])
    outputs = []
    for map_item in items:
        # The Map's ItemSelector and the task's payload: {job_id, work_bucket, chunk, attempt}.
        event = {"job_id": job_id, "work_bucket": state["work_bucket"], "chunk": map_item["chunk"], "attempt": 0}
        if map_item["chunk"]["index"] == 0:
            with pytest.raises(InjectedFault):
                encoder.handler(event, context())
            event["attempt"] = 1  # $$.State.RetryCount on the retry
        summary = encoder.handler(event, context(f"request-{map_item['chunk']['index']}"))
        assert summary["chunk"] == map_item["chunk"]["index"] and summary["attempt"] == event["attempt"]
        result = aws.get_json(WORK, f"jobs/{job_id}/results/chunk_{summary['chunk']:05d}.json")
        assert result["worker"] == f"request-{map_item['chunk']['index']}" and result["attempt"] == event["attempt"]
        outputs.append(result)
    # Only chunk 0, only once: a marker in the work bucket remembers the injected fault.
    assert aws.keys(WORK, f"jobs/{job_id}/faults/") == [f"jobs/{job_id}/faults/chunk_00000.json"]
    assert aws.item(job_id)["chunks_done"] == len(items)

    written = {"Bucket": WORK, "Key": "jobs/map-results/run/manifest.json"}  # what the Map hands on
    merged = merger.handler({**state, "encode": {"chunks": written}}, context())
    assert merged == {"job_id": job_id, "status": "COMPLETE", "manifest_key": f"{job_id}/manifest.json"}
    manifest = check_against_source(aws.download(f"{job_id}/", tmp_path / "out"), source)
    assert [r["name"] for r in manifest["renditions"]] == ["240p"]

    # A failure caught after publishing: partial output goes, the FAILED manifest stays.
    cause = json.dumps({"errorType": "InputError", "errorMessage": "CORRUPT_INPUT: the video data is truncated",
                        "stackTrace": ["  File \"/var/task/vtp/handlers/encoder.py\" ..."]})
    failed = failure.handler({**state, "encode": {"chunks": written}, "error": {"Error": "InputError", "Cause": cause}}, context())
    assert failed == {"job_id": job_id, "status": "FAILED",
                      "error": {"code": "CORRUPT_INPUT", "message": "the video data is truncated"}}
    assert aws.keys(OUTPUT, f"{job_id}/") == [f"{job_id}/manifest.json", f"{job_id}/report.html"]
    failed_manifest = aws.get_json(OUTPUT, f"{job_id}/manifest.json")
    assert failed_manifest["status"] == "FAILED" and failed_manifest["input"] == f"s3://{INPUT}/{key}"
    assert failed_manifest["failed_stage"] == "merge"
    item = aws.item(job_id)
    assert item["status"] == "FAILED" and item["error_code"] == "CORRUPT_INPUT" and item["stage"] == "failed:merge"


def test_the_splitter_handler_reports_every_record(aws, tmp_path):
    from vtp.handlers import splitter

    empty = tmp_path / "nothing here.mov"
    empty.write_bytes(b"")
    put = aws.upload(empty, "handlers/nothing here.mov")
    event = s3_event(INPUT, "handlers/nothing here.mov", put, 0)
    removed = json.loads(json.dumps(event["Records"][0]))
    removed["eventName"] = "ObjectRemoved:Delete"
    event["Records"].append(removed)
    result = splitter.handler(event, context())
    [job] = result["jobs"]
    assert job["status"] == "FAILED" and job["error"]["code"] == "EMPTY_INPUT"
    assert job["job_id"].startswith("nothing-here-")
    assert aws.keys(OUTPUT, f"{job['job_id']}/") == [f"{job['job_id']}/manifest.json", f"{job['job_id']}/report.html"]


# --- the splitter's retries, with real media ---------------------------------------------------


def test_a_throttled_start_execution_is_retried_by_botocore_and_the_job_starts(aws, clip, monkeypatch):
    """The test-only fault answers the first StartExecution of a key that names it with a
    ThrottlingException (as a busy Step Functions would): the client's own retries start it."""
    from vtp.handlers import splitter

    monkeypatch.setenv(contract.ENV_SPLITTER_FAULTS, "1")
    source = clip("silent")
    key = f"uploads/{contract.FAULT_THROTTLE_START}/clip.mp4"
    put = aws.upload(source, key)
    result = splitter.handler(sqs_event(s3_event(INPUT, key, put, source.stat().st_size)), context())
    [job] = result["jobs"]
    assert job["status"] == "STARTED" and job["attempt"] == 1 and result["batchItemFailures"] == []
    assert aws.keys(WORK, f"jobs/{job['job_id']}/faults/") == [f"jobs/{job['job_id']}/faults/start-throttled.json"]
    assert [e["name"] for e in aws.executions() if e["name"].startswith(job["job_id"])] == [f"{job['job_id']}-1"]
    item = aws.item(job["job_id"])
    assert item["execution"] == f"{job['job_id']}-1" and "last_error" not in item


def test_a_splitter_killed_after_its_claim_is_taken_over_by_the_retry(aws, clip, small_config):
    """The first delivery dies right after its claim; the same event again, while its lease
    holds, is handed back (ClaimHeld); once the lease is over the retry finishes the job."""
    from vtp.aws.pipeline import ClaimHeld

    class Killed(BaseException):
        pass

    def die(claim):
        raise Killed(claim.attempt)

    source = clip("silent")
    put = aws.upload(source, "uploads/killed.mp4")
    [obj] = sources_in_event(s3_event(INPUT, "uploads/killed.mp4", put, source.stat().st_size))
    starts = []
    options = dict(buckets=aws.buckets(), store=aws.store(), reject=_no_reject,
                   config=small_config.with_changes(ladder_mode=LadderMode.FIXED),
                   start_execution=lambda **kwargs: starts.append(kwargs))
    with pytest.raises(Killed):
        start_job(obj, after_claim=die, lease_s=1.0, **options)
    with pytest.raises(ClaimHeld):
        start_job(obj, **options)
    import time

    time.sleep(1.1)
    result = start_job(obj, **options)
    assert result["status"] == "STARTED" and result["attempt"] == 2 and [s["name"] for s in starts] == [f"{obj.job_id}-2"]
    item = aws.item(obj.job_id)
    assert item["attempts"] == 2 and item["execution"] == f"{obj.job_id}-2" and item["stage"] == "encode"
