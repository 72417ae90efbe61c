"""The Lambda handlers called directly with realistic events, moto backing S3, DynamoDB and
Step Functions. Assertions are on what lands in the buckets and the table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from tests.support.checks import check_against_source
from vtp.core.probe import probe
from vtp.synth import ClipSpec, generate_clip

REGION = "us-east-1"
INPUT, WORK, OUTPUT, TABLE = "vtp-input", "vtp-work", "vtp-output", "vtp-jobs"


@dataclass
class FakeLambdaContext:
    function_name: str = "vtp-test"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vtp-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return generate_clip(
        tmp_path_factory.mktemp("clip") / "clip.mp4", ClipSpec(duration_s=5.0, width=640, height=360)
    )


@pytest.fixture
def aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "vtp-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "vtp")
    monkeypatch.setenv("VTP_SCRATCH", str(tmp_path / "scratch"))
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT, WORK, OUTPUT):
            s3.create_bucket(Bucket=bucket)
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        machine = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="vtp", definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/vtp",
        )
        for name, value in {
            "INPUT_BUCKET": INPUT, "WORK_BUCKET": WORK, "OUTPUT_BUCKET": OUTPUT, "JOBS_TABLE": TABLE,
            "STATE_MACHINE_ARN": machine["stateMachineArn"],
        }.items():
            monkeypatch.setenv(name, value)
        from vtp.handlers import common, splitter

        common.buckets.cache_clear()
        common.job_store.cache_clear()
        splitter._stepfunctions.cache_clear()
        for name, value in {"VTP_LADDER": "360p,240p", "VTP_PRESET": "ultrafast", "VTP_GOP_S": "1",
                            "VTP_CHUNK_S": "2", "VTP_SEGMENT_S": "2"}.items():
            monkeypatch.setenv(name, value)
        yield s3
        common.buckets.cache_clear()
        common.job_store.cache_clear()
        splitter._stepfunctions.cache_clear()


def s3_event(key: str, size: int, etag: str = "0123abcd") -> dict:
    """What S3 sends: the key URL-encoded, spaces as '+'."""
    return {
        "Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
            "eventTime": "2026-11-29T12:00:00.000Z", "eventName": "ObjectCreated:CompleteMultipartUpload",
            "s3": {
                "s3SchemaVersion": "1.0", "configurationId": "vtp-splitter",
                "bucket": {"name": INPUT, "arn": f"arn:aws:s3:::{INPUT}"},
                "object": {"key": quote_plus(key), "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5"},
            },
        }]
    }


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def job_item(job_id: str) -> dict:
    return boto3.resource("dynamodb", region_name=REGION).Table(TABLE).get_item(Key={"job_id": job_id})["Item"]


def executions() -> list[dict]:
    client = boto3.client("stepfunctions", region_name=REGION)
    arn = client.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return client.list_executions(stateMachineArn=arn)["executions"]


def run_splitter(event: dict) -> dict:
    from vtp.handlers import splitter

    return splitter.handler(event, FakeLambdaContext())


def test_splitter_starts_one_job_for_a_url_encoded_key(aws, clip):
    key = "uploads/My Holiday (1) + more.mp4"
    aws.upload_file(str(clip), INPUT, key)
    result = run_splitter(s3_event(key, clip.stat().st_size))

    [job] = result["jobs"]
    assert job["status"] == "STARTED"
    job_id = job["job_id"]
    assert job_id.startswith("my-holiday-1-more-")
    work = keys(aws, WORK, f"jobs/{job_id}/")
    chunks = json.loads(aws.get_object(Bucket=WORK, Key=f"jobs/{job_id}/chunks.json")["Body"].read())
    assert len(chunks) == job["chunks"] >= 2
    assert [f"jobs/{job_id}/pieces/chunk_{i:05d}.nut" for i in range(len(chunks))] == [k for k in work if "/pieces/" in k]
    assert f"jobs/{job_id}/job.json" in work
    item = job_item(job_id)
    assert item["status"] == "RUNNING" and item["stage"] == "encode" and item["input"] == f"s3://{INPUT}/{key}"
    [execution] = executions()
    assert execution["name"] == job_id
    assert keys(aws, OUTPUT) == []


def test_a_duplicate_event_starts_nothing_more(aws, clip):
    aws.upload_file(str(clip), INPUT, "clip.mp4")
    event = s3_event("clip.mp4", clip.stat().st_size)
    first = run_splitter(event)["jobs"][0]
    second = run_splitter(event)["jobs"][0]
    third = run_splitter(event)["jobs"][0]
    assert first["status"] == "STARTED"
    assert second == third == {"job_id": first["job_id"], "status": "DUPLICATE"}
    assert len(executions()) == 1
    assert len(boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE)["Items"]) == 1


def test_a_new_version_of_the_same_key_is_a_new_job(aws, clip):
    aws.upload_file(str(clip), INPUT, "clip.mp4")
    first = run_splitter(s3_event("clip.mp4", clip.stat().st_size, etag="aaa"))["jobs"][0]
    second = run_splitter(s3_event("clip.mp4", clip.stat().st_size, etag="bbb"))["jobs"][0]
    assert first["job_id"] != second["job_id"]
    assert {e["name"] for e in executions()} == {first["job_id"], second["job_id"]}


def test_a_bad_input_fails_the_job_with_its_reason_and_no_workflow(aws, tmp_path):
    bad = tmp_path / "song.mp4"
    bad.write_bytes(b"not a video at all " * 100)
    aws.upload_file(str(bad), INPUT, "song.mp4")
    [job] = run_splitter(s3_event("song.mp4", bad.stat().st_size))["jobs"]

    assert job["status"] == "FAILED" and job["error"]["code"] == "UNSUPPORTED_INPUT"
    item = job_item(job["job_id"])
    assert item["status"] == "FAILED" and item["error_code"] == "UNSUPPORTED_INPUT"
    assert executions() == []
    assert keys(aws, OUTPUT) == [f"{job['job_id']}/manifest.json"]
    manifest = json.loads(aws.get_object(Bucket=OUTPUT, Key=f"{job['job_id']}/manifest.json")["Body"].read())
    assert manifest["status"] == "FAILED" and manifest["error"]["code"] == "UNSUPPORTED_INPUT"
    assert keys(aws, WORK) == []


def test_the_whole_job_through_the_handlers_publishes_a_correct_ladder(aws, clip, tmp_path, monkeypatch):
    from vtp.handlers import audio, encoder, failure, merger

    monkeypatch.setenv("VTP_FAIL_FIRST_ATTEMPT_CHUNK", "1")
    aws.upload_file(str(clip), INPUT, "clip.mp4")
    [job] = run_splitter(s3_event("clip.mp4", clip.stat().st_size))["jobs"]
    job_id = job["job_id"]
    execution_input = json.loads(
        boto3.client("stepfunctions", region_name=REGION).describe_execution(
            executionArn=executions()[0]["executionArn"]
        )["input"]
    )
    assert execution_input["chunks_key"] == f"jobs/{job_id}/chunks.json"
    items = json.loads(aws.get_object(Bucket=WORK, Key=execution_input["chunks_key"])["Body"].read())

    from vtp.aws.pipeline import InjectedFault

    for item in items:
        event = {"job_id": job_id, "work_bucket": WORK, "chunk": item["chunk"]}
        if item["chunk"]["index"] == 1:
            with pytest.raises(InjectedFault):
                encoder.handler(event, FakeLambdaContext())
        result = encoder.handler(event, FakeLambdaContext())  # the workflow's retry
        assert result["chunk"] == item["chunk"]["index"] and result["bytes"] > 0
    assert audio.handler(execution_input, FakeLambdaContext())["audio"] is True
    assert job_item(job_id)["chunks_done"] == len(items)

    published = merger.handler(execution_input, FakeLambdaContext())
    assert published == {"job_id": job_id, "status": "COMPLETE", "manifest_key": f"{job_id}/manifest.json"}
    item = job_item(job_id)
    assert item["status"] == "COMPLETE" and item["stage"] == "done"

    local = tmp_path / "downloaded"
    for key in keys(aws, OUTPUT, f"{job_id}/"):
        target = local / key
        target.parent.mkdir(parents=True, exist_ok=True)
        aws.download_file(OUTPUT, key, str(target))
    head = aws.head_object(Bucket=OUTPUT, Key=f"{job_id}/hls/master.m3u8")
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    info = probe(clip)
    check_against_source(local / job_id, info)

    # A failure caught later removes what was published and leaves the FAILED manifest.
    cause = json.dumps({"errorType": "PipelineError", "errorMessage": "ENCODE_FAILED: encoding chunk_00002 failed"})
    failure.handler({**execution_input, "error": {"Error": "PipelineError", "Cause": cause}}, FakeLambdaContext())
    assert keys(aws, OUTPUT, f"{job_id}/") == [f"{job_id}/manifest.json"]
    item = job_item(job_id)
    assert item["status"] == "FAILED" and item["error_code"] == "ENCODE_FAILED"


def test_a_file_over_the_size_limit_is_refused_from_the_event_before_any_download(aws, clip, monkeypatch):
    monkeypatch.setenv("VTP_MAX_BYTES", "1000")
    aws.upload_file(str(clip), INPUT, "big.mp4")
    [job] = run_splitter(s3_event("big.mp4", clip.stat().st_size))["jobs"]
    assert job["status"] == "FAILED" and job["error"]["code"] == "INPUT_TOO_LARGE"
    assert "over the limit of 1,000" in job["error"]["message"]
    assert executions() == [] and keys(aws, WORK) == []
