"""The real CDK app deployed to LocalStack: real uploads, real Step Functions executions
running the real Lambda code (vtp-local-process executor), real outputs checked.

The stack is deployed once per session with the test-only fault injection on: the first
attempt at chunk 0 of every job fails, so every job also proves the workflow's retry.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.checks import check_against_source
from vtp.aws.pipeline import SourceObject
from vtp.synth import ClipSpec, generate_clip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STACK = "VtpIntegration"
SAMPLE = REPO / "sample_media" / "big_buck_bunny_720p_16s.mp4"
SMALL_SAMPLE = REPO / "sample_media" / "city_timelapse_720x404_noaudio.mp4"
SETTINGS = "VTP_LADDER=480p,360p;VTP_PRESET=ultrafast"
JOB_TIMEOUT_S = 300


def _deploy_module():
    name = "vtp_testing_localstack_deploy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "testing" / "localstack" / "deploy.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Deployed:
    localstack: object
    outputs: dict[str, str]
    events_queue_url: str

    def client(self, name: str):
        return self.localstack.client(name)

    @property
    def input_bucket(self) -> str:
        return self.outputs["InputBucketName"]

    @property
    def output_bucket(self) -> str:
        return self.outputs["OutputBucketName"]

    @property
    def work_bucket(self) -> str:
        return self.outputs["WorkBucketName"]

    def upload(self, path: Path, key: str) -> str:
        """Put the file and return the job id the pipeline derives for it."""
        s3 = self.client("s3")
        s3.upload_file(str(path), self.input_bucket, key)
        return self.job_id_of(key)

    def job_id_of(self, key: str) -> str:
        head = self.client("s3").head_object(Bucket=self.input_bucket, Key=key)
        version = head.get("VersionId")
        if version and version != "null":
            return SourceObject(self.input_bucket, key, version, head["ContentLength"]).job_id
        return SourceObject(self.input_bucket, key, head["ETag"].strip('"'), head["ContentLength"], versioned=False).job_id

    def manifest(self, job_id: str) -> dict:
        body = self.client("s3").get_object(Bucket=self.output_bucket, Key=f"{job_id}/manifest.json")["Body"]
        return json.loads(body.read())

    def sizes(self, bucket: str, prefix: str) -> dict[str, int]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def job(self, job_id: str) -> dict | None:
        item = self.client("dynamodb").get_item(
            TableName=self.outputs["JobsTableName"], Key={"job_id": {"S": job_id}}, ConsistentRead=True
        ).get("Item")
        return {k: list(v.values())[0] for k, v in item.items()} if item else None

    def wait_for_job(self, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job and job["status"] in ("COMPLETE", "FAILED"):
                return job
            time.sleep(1.0)
        raise AssertionError(
            f"job {job_id} did not finish in {timeout_s} s: {self.job(job_id)}\n{self.localstack.log_tail(40)}"
        )

    def executions_named(self, name: str) -> list[dict]:
        sfn = self.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.outputs["StateMachineArn"])
        return [e for page in pages for e in page["executions"] if e["name"] == name]

    def wait_for_execution(self, name: str, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.executions_named(name)
            if found and found[0]["status"] != "RUNNING":
                return found[0]
            time.sleep(1.0)
        raise AssertionError(f"execution {name} still running: {self.executions_named(name)}")

    def keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def download_job(self, job_id: str, dest: Path) -> Path:
        s3 = self.client("s3")
        for key in self.keys(self.output_bucket, f"{job_id}/"):
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(self.output_bucket, key, str(target))
        return dest / job_id


@pytest.fixture(scope="session")
def deployed(localstack) -> Deployed:
    deploy = _deploy_module()
    deploy.bootstrap(localstack.endpoint)
    outputs = deploy.deploy(
        localstack.endpoint,
        STACK,
        context={"vtp:stack-name": STACK, "vtp:test-fault-injection": "true", "vtp:settings": SETTINGS},
    )
    # Completion events go to a queue the tests read.
    sqs = localstack.client("sqs")
    queue_url = sqs.create_queue(QueueName="vtp-completion-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = localstack.client("events")
    events.put_rule(Name="vtp-completed", EventPattern=json.dumps({"source": ["vtp.pipeline"]}))
    events.put_targets(Rule="vtp-completed", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return Deployed(localstack, outputs, queue_url)


@pytest.fixture(scope="session")
def sample_job(deployed) -> str:
    job_id = deployed.upload(SAMPLE, "uploads/big buck bunny (sample).mp4")
    deployed.wait_for_job(job_id)
    return job_id


def completion_events(deployed: Deployed, wait_s: float = 20) -> list[dict]:
    sqs = deployed.client("sqs")
    found = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=deployed.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in messages.get("Messages", []):
            found.append(json.loads(message["Body"]))
        if found and not messages.get("Messages"):
            break
    return found


def test_an_upload_becomes_a_complete_correct_ladder(deployed, sample_job, tmp_path):
    job = deployed.job(sample_job)
    assert job["status"] == "COMPLETE", job
    [execution] = deployed.executions_named(sample_job)
    assert deployed.wait_for_execution(sample_job)["status"] == "SUCCEEDED"
    assert execution["name"] == sample_job

    folder = deployed.download_job(sample_job, tmp_path)
    manifest = check_against_source(folder, SAMPLE)
    assert [r["name"] for r in manifest["renditions"]] == ["480p", "360p"]
    assert manifest["input"] == f"s3://{deployed.input_bucket}/uploads/big buck bunny (sample).mp4"

    events = completion_events(deployed)
    details = [e["detail"] for e in events if e.get("detail-type") == "TranscodeJobCompleted"]
    assert any(d.get("job_id") == sample_job for d in details), events


def test_no_stage_copies_the_video(deployed, sample_job):
    """The work bucket holds only small JSON (the plan, the map's items and results); the
    output holds each media segment once, so its media bytes are the ladder's bytes."""
    work = deployed.sizes(deployed.work_bucket, f"jobs/{sample_job}/")
    assert work and all(key.endswith(".json") for key in work), sorted(work)
    assert max(work.values()) < 200_000
    results = deployed.sizes(deployed.work_bucket, "jobs/map-results/")
    assert results and all(key.endswith(".json") for key in results)
    manifest = deployed.manifest(sample_job)
    output = deployed.sizes(deployed.output_bucket, f"{sample_job}/")
    media = sum(size for key, size in output.items() if key.endswith((".m4s", ".mp4")))
    ladder = sum(r["size_bytes"] for r in manifest["renditions"]) + manifest["audio"]["size_bytes"]
    inits = sum(size for key, size in output.items() if key.endswith("init.mp4"))
    assert media == ladder + inits
    assert not any(key.endswith(".nut") for key in output)


def test_an_encoder_failure_on_the_first_attempt_is_retried_to_completion(deployed, sample_job):
    marker = f"jobs/{sample_job}/faults/chunk_00000"
    assert deployed.keys(deployed.work_bucket, marker) == [marker], "the injected fault fired"
    assert deployed.job(sample_job)["status"] == "COMPLETE"


def test_a_bad_file_fails_with_a_reason_and_publishes_nothing(deployed, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is a text file, not a video\n" * 200)
    job_id = deployed.upload(bad, "uploads/holiday.mp4")
    job = deployed.wait_for_job(job_id)

    assert job["status"] == "FAILED" and job["error_code"] == "UNSUPPORTED_INPUT", job
    assert deployed.keys(deployed.output_bucket, f"{job_id}/") == [f"{job_id}/manifest.json"]
    manifest = deployed.manifest(job_id)
    assert manifest["status"] == "FAILED" and manifest["error"]["code"] == "UNSUPPORTED_INPUT"
    assert deployed.executions_named(job_id) == []


def test_the_same_event_three_times_makes_one_job_and_one_execution(deployed):
    key = "uploads/city once.mp4"
    job_id = deployed.upload(SMALL_SAMPLE, key)
    head = deployed.client("s3").head_object(Bucket=deployed.input_bucket, Key=key)
    event = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "awsRegion": "us-east-1",
        "s3": {"bucket": {"name": deployed.input_bucket},
               "object": {"key": "uploads/city+once.mp4", "size": head["ContentLength"], "eTag": head["ETag"].strip('"')}},
    }]}
    splitter = next(
        name for name in _function_names(deployed) if "Splitter" in name
    )
    lam = deployed.client("lambda")
    for _ in range(2):  # S3 already delivered it once
        response = lam.invoke(FunctionName=splitter, Payload=json.dumps(event).encode())
        assert "FunctionError" not in response, response["Payload"].read()
    job = deployed.wait_for_job(job_id)
    assert job["status"] == "COMPLETE", job
    assert len(deployed.executions_named(job_id)) == 1
    items = deployed.client("dynamodb").scan(TableName=deployed.outputs["JobsTableName"])["Items"]
    assert [item["job_id"]["S"] for item in items].count(job_id) == 1


def _function_names(deployed: Deployed) -> list[str]:
    pages = deployed.client("lambda").get_paginator("list_functions").paginate()
    return [f["FunctionName"] for page in pages for f in page["Functions"]]


def test_a_multipart_upload_triggers_a_job(deployed, tmp_path):
    clip = generate_clip(tmp_path / "long.mp4", ClipSpec(duration_s=12.0, width=1280, height=720))
    data = clip.read_bytes()
    part_size = 5 * 1024 * 1024
    assert len(data) > part_size, "the clip must need more than one part"
    s3 = deployed.client("s3")
    key = "uploads/multipart clip.mp4"
    upload = s3.create_multipart_upload(Bucket=deployed.input_bucket, Key=key)
    parts = []
    for number, start in enumerate(range(0, len(data), part_size), start=1):
        part = s3.upload_part(
            Bucket=deployed.input_bucket, Key=key, UploadId=upload["UploadId"],
            PartNumber=number, Body=data[start : start + part_size],
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    assert len(parts) >= 2
    s3.complete_multipart_upload(
        Bucket=deployed.input_bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    job = deployed.wait_for_job(deployed.job_id_of(key))
    assert job["status"] == "COMPLETE", job


def test_five_uploads_at_once_make_five_complete_jobs(deployed):
    keys = [f"uploads/batch/city-{n}.mp4" for n in range(5)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        job_ids = list(pool.map(lambda key: deployed.upload(SMALL_SAMPLE, key), keys))
    assert len(set(job_ids)) == 5
    jobs = [deployed.wait_for_job(job_id) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["COMPLETE"] * 5, jobs
    for job_id in job_ids:
        assert f"{job_id}/manifest.json" in deployed.keys(deployed.output_bucket, f"{job_id}/")
        assert f"{job_id}/master.m3u8" in deployed.keys(deployed.output_bucket, f"{job_id}/")


def test_vtp_run_target_localstack_runs_the_cloud_flow_and_downloads_the_outputs(deployed, tmp_path):
    import os
    import subprocess

    env = {**os.environ, "AWS_ENDPOINT_URL": deployed.localstack.endpoint, "VTP_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "vtp"), "run", "--target", "localstack", "--stack", STACK,
         str(SMALL_SAMPLE), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=JOB_TIMEOUT_S + 60,
    )
    assert result.returncode == 0, result.stderr
    assert "COMPLETE (LocalStack)" in result.stdout and "Traceback" not in result.stderr
    [folder] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETE"
    assert (folder / "master.m3u8").exists() and (folder / "manifest.mpd").exists()


def test_a_minute_of_720p_costs_the_serial_stages_a_few_megabytes(deployed, tmp_path):
    """60 s of 720p: the splitter and the merger read a few MB whatever the video's size."""
    clip = generate_clip(tmp_path / "minute.mp4", ClipSpec(duration_s=60.0, width=1280, height=720))
    job_id = deployed.upload(clip, "uploads/a minute of 720p.mp4")
    job = deployed.wait_for_job(job_id, timeout_s=600)
    assert job["status"] == "COMPLETE", job
    stages = deployed.manifest(job_id)["stages"]
    size = clip.stat().st_size
    assert size > 20_000_000
    assert stages["split"]["bytes_read"] < 5_000_000, stages["split"]
    assert stages["merge"]["bytes_read"] < 5_000_000, stages["merge"]
    assert stages["encode"]["sum"]["bytes_read"] >= size  # the encoders read the video, in parallel
    assert stages["encode"]["chunks"] == 5


def test_a_ten_minute_source_completes(deployed, tmp_path):
    clip = generate_clip(tmp_path / "ten.mp4", ClipSpec(duration_s=600.0, width=320, height=180, fps="25"))
    job_id = deployed.upload(clip, "uploads/ten minutes.mp4")
    job = deployed.wait_for_job(job_id, timeout_s=900)
    assert job["status"] == "COMPLETE", job
    manifest = deployed.manifest(job_id)
    assert manifest["chunks"] == 50 and manifest["source"]["duration_s"] == pytest.approx(600.0, abs=0.05)
    assert manifest["source"]["frames"] == 15000
