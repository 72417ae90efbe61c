"""The AWS data-access edges on moto: the DynamoDB job store, the S3 object store, and the
translation of S3 events and workflow errors."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from vtp.aws.jobstore import DynamoJobStore, stack_output
from vtp.aws.pipeline import error_from_workflow, sources_in_event
from vtp.aws.storage import S3Store
from vtp.core.errors import ErrorCode
from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.core.storage import FolderStore, upload_folder

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
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


def test_the_job_store_creates_once_updates_and_lists_newest_first(table):
    table.create(JobRecord(job_id="a", input="s3://in/a.mp4", created_at="2026-11-29T10:00:00Z"))
    table.create(JobRecord(job_id="b", input="s3://in/b.mp4", created_at="2026-11-29T11:00:00Z"))
    with pytest.raises(JobAlreadyExists):
        table.create(JobRecord(job_id="a", input="s3://in/a.mp4"))
    table.update("a", status=JobStatus.COMPLETE, stage="done", timings={"total_s": 12.5, "probe_s": 0.25})
    table.update("b", chunks_total=3, chunks_done=0)
    table.add_chunk_done("b")
    table.add_chunk_done("b")

    a, b = table.get("a"), table.get("b")
    assert a.status is JobStatus.COMPLETE and a.timings == {"total_s": 12.5, "probe_s": 0.25}
    assert (b.chunks_done, b.chunks_total) == (2, 3)
    assert [r.job_id for r in table.recent()] == ["b", "a"]
    assert table.get("missing") is None


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
    with pytest.raises(RuntimeError, match="cannot read stack"):
        stack_output("NoSuchStack", "JobsTableName")


def test_the_s3_store_round_trips_and_deletes_a_prefix(aws, tmp_path):
    boto3.client("s3").create_bucket(Bucket="out")
    store = S3Store("out")
    folder = tmp_path / "job"
    (folder / "hls" / "720p").mkdir(parents=True)
    (folder / "hls" / "master.m3u8").write_text("#EXTM3U\n")
    (folder / "hls" / "720p" / "segment_00000.m4s").write_bytes(b"\0" * 10)
    (folder / "manifest.json").write_text("{}")
    assert upload_folder(store, folder, "job-1", last=("manifest.json",)) == 3
    assert sorted(store.keys("job-1/")) == [
        "job-1/hls/720p/segment_00000.m4s", "job-1/hls/master.m3u8", "job-1/manifest.json"
    ]
    head = boto3.client("s3").head_object(Bucket="out", Key="job-1/hls/master.m3u8")
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    store.put_json("job-1/x.json", {"a": 1})
    assert store.get_json("job-1/x.json") == {"a": 1} and store.exists("job-1/x.json")
    assert not store.exists("job-1/nothing")
    assert store.download("job-1/hls/master.m3u8", tmp_path / "got" / "m.m3u8").read_text() == "#EXTM3U\n"
    assert store.delete_prefix("job-1/") == 4
    assert list(store.keys("job-1/")) == []


def test_the_folder_store_refuses_keys_outside_it(tmp_path):
    store = FolderStore(tmp_path / "root")
    store.put_json("a/b.json", [1])
    assert store.get_json("a/b.json") == [1] and list(store.keys("a/")) == ["a/b.json"]
    with pytest.raises(ValueError):
        store.put_json("../escape.json", {})


def test_s3_events_give_decoded_keys_and_versions():
    event = {"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "in"},
         "object": {"key": "my+film+%281%29.mp4", "size": 10, "eTag": "e1", "versionId": "v9"}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "in"}, "object": {"key": "gone.mp4"}}},
        {"eventName": "ObjectCreated:CompleteMultipartUpload", "s3": {"bucket": {"name": "in"},
         "object": {"key": "big.mp4", "size": 20, "eTag": "e2-3"}}},
    ]}
    first, second = sources_in_event(event)
    assert (first.key, first.version, first.size) == ("my film (1).mp4", "v9", 10)
    assert (second.key, second.version) == ("big.mp4", "e2-3")
    assert first.job_id != second.job_id and first.job_id.startswith("my-film-1-")


def test_workflow_errors_keep_their_reason_code():
    cause = json.dumps({"errorType": "InputError", "errorMessage": "CORRUPT_INPUT: the video data is truncated"})
    error = error_from_workflow({"Error": "InputError", "Cause": cause})
    assert error.code is ErrorCode.CORRUPT_INPUT and error.message == "the video data is truncated"
    timeout = error_from_workflow({"Error": "States.Timeout", "Cause": "the task timed out"})
    assert timeout.code is ErrorCode.INTERNAL_ERROR and "States.Timeout" in timeout.message
    assert error_from_workflow(None).code is ErrorCode.INTERNAL_ERROR


def test_the_job_store_stamps_when_each_stage_began(table):
    table.create(JobRecord(job_id="c", input="s3://in/c.mp4", stage="split"))
    table.update("c", stage="encode")
    table.update("c", stage="done", status=JobStatus.COMPLETE)
    record = table.get("c")
    assert set(record.stage_times) == {"split", "encode", "done"}
    assert record.stage_times["split"] <= record.stage_times["encode"] <= record.stage_times["done"]
