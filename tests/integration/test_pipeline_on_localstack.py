"""The real CDK app deployed to LocalStack: real uploads, real Step Functions executions
running the real Lambda code (vtp-local-process executor), real outputs checked.

The stack is deployed once per session, as a small account would run it: the encoder's
reserved concurrency 2, at most 2 chunks per job and 4 jobs at once, uploads probed 2 at a
time, a 30 s splitter timeout (lease 40 s, the uploads queue's visibility 45 s) and a key
prefix filter ("uploads/"). The test-only faults are on: the first attempt at chunk 0 of
every job fails (every job proves the workflow's retry), and keys that name a splitter
fault make the first splitter die after its claim or the first StartExecution throttled.
Those slow scenarios are uploaded at the start of the session (fixture ``early``) and
checked near the end, so their waits overlap the other tests.

The fitted ladder (``VTP_LADDER=auto``: the analysis Map and FitLadder before the encoders)
is a deploy-time setting, so it runs on a second, small stack (``VtpIntegrationAuto``,
chunks of 8 s) that is deployed in the background from the start of the session (fixture
``fitted_upload``, with the ``early`` uploads), while the tests on the first stack run; its
one job is checked near the end.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser.conftest import Site, make_handler
from tests.browser.test_report_page import check_complete_report, embedded_data
from tests.support.checks import check_against_source
from vtp import contract
from vtp.aws.pipeline import SourceObject
from vtp.synth import ClipSpec, generate_clip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STACK = "VtpIntegration"
SAMPLE = REPO / "sample_media" / "big_buck_bunny_720p_16s.mp4"
SMALL_SAMPLE = REPO / "sample_media" / "city_timelapse_720x404_noaudio.mp4"
SETTINGS = "VTP_LADDER=480p,360p;VTP_PRESET=ultrafast"
JOB_TIMEOUT_S = 300
SPLITTER_TIMEOUT_S = 30
CONTEXT = {
    "vtp:stack-name": STACK, "vtp:test-fault-injection": "true", "vtp:settings": SETTINGS,
    "vtp:splitter-timeout-s": str(SPLITTER_TIMEOUT_S), "vtp:queue-retry-delay-s": "3", "vtp:key-prefix": "uploads/",
}
PARAMETERS = {"MaxConcurrency": "2", "EncoderReservedConcurrency": "2", "MaxRunningJobs": "4", "SplitterConcurrency": "2"}
# The second stack: the fitted ladder, chunks of 8 s (the 16 s sample makes two), no faults.
AUTO_STACK = "VtpIntegrationAuto"
AUTO_SETTINGS = "VTP_LADDER=auto;VTP_PRESET=ultrafast;VTP_CHUNK_S=8"
AUTO_CONTEXT = {
    "vtp:stack-name": AUTO_STACK, "vtp:settings": AUTO_SETTINGS, "vtp:splitter-timeout-s": str(SPLITTER_TIMEOUT_S),
    "vtp:queue-retry-delay-s": "3", "vtp:key-prefix": "uploads/",
}
AUTO_PARAMETERS = {"MaxConcurrency": "2", "MaxRunningJobs": "2", "SplitterConcurrency": "2"}
AUTO_DEPLOY_TIMEOUT_S = 600


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
    seen_events: list[dict] = field(default_factory=list)

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
        """Put the file and return the job id the pipeline derives for this upload (its version)."""
        put = self.client("s3").put_object(Bucket=self.input_bucket, Key=key, Body=path.read_bytes())
        return SourceObject(self.input_bucket, key, put["VersionId"], path.stat().st_size).job_id

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
        return _plain(item) if item else None

    def jobs_of(self, key: str) -> list[dict]:
        """Every job record of an upload key (the table's by_input index)."""
        items = self.client("dynamodb").query(
            TableName=self.outputs["JobsTableName"], IndexName="by_input",
            KeyConditionExpression="#i = :uri", ExpressionAttributeNames={"#i": "input"},
            ExpressionAttributeValues={":uri": {"S": f"s3://{self.input_bucket}/{key}"}},
        )["Items"]
        return [_plain(item) for item in items]

    def wait_for_job(self, job_id: str, timeout_s: float = JOB_TIMEOUT_S, until=("COMPLETE", "FAILED")) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            # LocalStack's DynamoDB (moto) makes an update of a new item in two steps: a read
            # between them sees the key alone.
            if job and "status" in job and (job["status"] in until if isinstance(until, tuple) else until(job)):
                return job
            time.sleep(1.0)
        raise AssertionError(
            f"job {job_id} did not get there in {timeout_s} s: {self.job(job_id)}\n{self.localstack.log_tail(40)}"
        )

    def executions_of(self, job_id: str) -> list[dict]:
        sfn = self.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.outputs["StateMachineArn"])
        return [e for page in pages for e in page["executions"] if contract.job_id_of_execution(e["name"]) == job_id]

    def wait_for_execution(self, job_id: str, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.executions_of(job_id)
            if found and all(e["status"] != "RUNNING" for e in found):
                return found[0]
            time.sleep(1.0)
        raise AssertionError(f"the execution of {job_id} still runs: {self.executions_of(job_id)}")

    def get_json(self, bucket: str, key: str):
        return json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())

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

    def events(self, wait_for=lambda events: True, wait_s: float = 20) -> list[dict]:
        """Every pipeline event seen so far (the test queue is read once; events are kept here)."""
        sqs = self.client("sqs")
        deadline = time.monotonic() + wait_s
        while True:
            messages = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in messages.get("Messages", []):
                self.seen_events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
            if (wait_for(self.seen_events) and not messages.get("Messages")) or time.monotonic() > deadline:
                return list(self.seen_events)

    def queue_depth(self, url_output: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.outputs[url_output],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


def _plain(item: dict) -> dict:
    """A DynamoDB item (typed attribute values) as plain Python values."""
    from boto3.dynamodb.types import TypeDeserializer

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):  # Decimal
            return int(value) if value == int(value) else float(value)
        return value

    deserialize = TypeDeserializer().deserialize
    return {key: plain(deserialize(value)) for key, value in item.items()}


def events_of(events: list[dict], detail_type: str, job_id: str) -> list[dict]:
    return [e["detail"] for e in events if e.get("detail-type") == detail_type and e["detail"].get("job_id") == job_id]


@pytest.fixture(scope="session")
def deployed(localstack) -> Deployed:
    deploy = _deploy_module()
    deploy.bootstrap(localstack.endpoint)
    outputs = deploy.deploy(localstack.endpoint, STACK, context=CONTEXT, parameters=PARAMETERS)
    # LocalStack's CloudFormation leaves ReservedConcurrentExecutions out (its Lambda resource
    # provider ignores the property; tests/infra checks the template): set the reservation the
    # EncoderReservedConcurrency parameter asks for through the Lambda API, which it enforces.
    lam = localstack.client("lambda")
    pages = lam.get_paginator("list_functions").paginate()
    [encoder] = [f["FunctionName"] for page in pages for f in page["Functions"]
                 if f.get("Description", "").startswith("vtp: one chunk")]
    lam.put_function_concurrency(FunctionName=encoder, ReservedConcurrentExecutions=int(PARAMETERS["EncoderReservedConcurrency"]))
    # Completion and failure events go to a queue the tests read.
    sqs = localstack.client("sqs")
    queue_url = sqs.create_queue(QueueName="vtp-pipeline-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = localstack.client("events")
    events.put_rule(Name="vtp-pipeline-events", EventPattern=json.dumps({"source": ["vtp.pipeline"]}))
    events.put_targets(Rule="vtp-pipeline-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return Deployed(localstack, outputs, queue_url)


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Tiny generated clips (different sizes, durations and sounds)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "first": generate_clip(folder / "first.mp4", ClipSpec(duration_s=6.0, width=320, height=180)),
        "second": generate_clip(folder / "second.mp4", ClipSpec(duration_s=4.0, width=426, height=240, fps="25")),
        "tiny": generate_clip(folder / "tiny.mp4", ClipSpec(duration_s=1.0, width=160, height=90, fps="10")),
    }


@pytest.fixture(scope="session")
def fitted_upload(deployed):
    """The fitted-ladder stack, deployed in the background (cdklocal, about a minute), then the
    sample uploaded to it: a future of (the stack, the job id). The session waits for it
    before LocalStack stops."""
    from concurrent.futures import ThreadPoolExecutor

    def deploy_and_upload() -> tuple[Deployed, str]:
        deploy = _deploy_module()
        outputs = deploy.deploy(deployed.localstack.endpoint, AUTO_STACK, context=AUTO_CONTEXT,
                                parameters=AUTO_PARAMETERS, timeout=AUTO_DEPLOY_TIMEOUT_S)
        auto = Deployed(deployed.localstack, outputs, deployed.events_queue_url)
        return auto, auto.upload(SAMPLE, "uploads/bunny (fitted ladder).mp4")

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auto-stack")
    future = pool.submit(deploy_and_upload)
    yield future
    try:
        future.result(timeout=AUTO_DEPLOY_TIMEOUT_S + 60)
    except Exception:  # noqa: BLE001 - reported by the test that uses it; LocalStack stops next
        pass
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def early(deployed, fitted_upload) -> dict[str, str]:
    """The scenarios that wait on purpose, uploaded first: a splitter killed after its claim
    (its retry comes after the queue's visibility timeout) and a throttled StartExecution;
    and the fitted-ladder stack's deploy starts (``fitted_upload``)."""
    return {
        "killed": deployed.upload(SMALL_SAMPLE, f"uploads/{contract.FAULT_DIE_AFTER_CLAIM}/city.mp4"),
        "throttled": deployed.upload(SMALL_SAMPLE, f"uploads/{contract.FAULT_THROTTLE_START}/city.mp4"),
    }


@pytest.fixture(scope="session")
def sample_job(deployed, early) -> str:
    job_id = deployed.upload(SAMPLE, "uploads/big buck bunny (sample).mp4")
    deployed.wait_for_job(job_id)
    return job_id


def test_an_upload_becomes_a_complete_correct_ladder(deployed, sample_job, tmp_path):
    job = deployed.job(sample_job)
    assert job["status"] == "COMPLETE", job
    execution = deployed.wait_for_execution(sample_job)
    assert execution["status"] == "SUCCEEDED" and execution["name"] == f"{sample_job}-1" == job["execution"]

    folder = deployed.download_job(sample_job, tmp_path)
    manifest = check_against_source(folder, SAMPLE)
    assert [r["name"] for r in manifest["renditions"]] == ["480p", "360p"]
    assert manifest["input"] == f"s3://{deployed.input_bucket}/uploads/big buck bunny (sample).mp4"

    events = deployed.events(lambda found: events_of(found, "TranscodeJobCompleted", sample_job))
    assert events_of(events, "TranscodeJobCompleted", sample_job), events


def test_the_report_page_of_a_cloud_job_plays_every_rung_and_prices_the_job(deployed, sample_job, browser, results, tmp_path):
    """report.html as the merger published it: played in Chromium from the downloaded folder,
    and its cost checked against a hand calculation from the manifest's own figures."""
    import threading
    from http.server import ThreadingHTTPServer

    folder = deployed.download_job(sample_job, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (results.parent / "localstack-manifest.json").write_text(json.dumps(manifest, indent=2))  # for the README's example
    data = embedded_data(folder / "report.html")
    assert data["where"] == "aws" and data["cost"] == manifest["cost"]
    # The encoders measured every rung's quality with the layer's scorer.
    for rendition in manifest["renditions"]:
        quality = rendition["quality"]
        assert quality and 0 < quality["vmaf_p5"] <= quality["vmaf_mean"] <= 100 and quality["frames_scored"] > 0, rendition
    assert [r["vmaf_mean"] for r in (r["quality"] for r in manifest["renditions"])] == sorted(
        (r["quality"]["vmaf_mean"] for r in manifest["renditions"]), reverse=True), "larger rungs score higher"

    bars = manifest["timeline"]["bars"]
    chunks = [b for b in bars if b["stage"] == "encode"]
    assert len(chunks) == manifest["chunks"] and all(b["worker"] for b in bars), bars
    assert any(b["attempt"] == 1 for b in chunks if b["chunk"] == 0), "the injected fault's retry is on the timeline"
    assert all(b["cold_start"] is not None and b["memory_mb"] > 0 for b in chunks)
    stages, cost = manifest["stages"], manifest["cost"]
    split, encode, merge = stages["split"], stages["encode"]["sum"], stages["merge"]
    price = {line["item"]: line["unit_price"] for line in cost["lines"]}
    runs = sum(1 + b["attempt"] for b in chunks)
    by_hand = (
        (split["wall_s"] * split["memory_mb"] + sum(b["end_s"] - b["start_s"] for b in chunks) * chunks[0]["memory_mb"]
         + merge["wall_s"] * merge["memory_mb"]) / 1024 * price["Lambda encoders"]
        + (2 + runs) * price["Lambda requests"]
        + (6 + runs) * price["Step Functions"]  # the ladder and rework choices, the map, merge, publish, succeed
        + (split["objects_written"] + 2 + encode["objects_written"] + len(chunks) + merge["objects_written"] + 1 + 3)
        * price["S3 PUT requests"]
        + (sum(f["requests"] - f["objects_written"] for f in (split, encode, merge)) + len(chunks)) * price["S3 GET requests"]
        + (encode["bytes_written"] + merge["bytes_written"]) / 1e9 * price["S3 storage, one month"]
        + (3 + len(chunks)) * price["DynamoDB writes"] + price["EventBridge"]
    )
    assert cost["total_usd"] == pytest.approx(by_hand, rel=0.01)

    log: list[tuple[str, int]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler({"/job/": folder}, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        check_complete_report(browser, Site(f"http://{host}:{port}", log), "/job/report.html", manifest, data,
                              results / "report-localstack.png")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


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
    marker = f"jobs/{sample_job}/faults/chunk_00000.json"
    assert deployed.keys(deployed.work_bucket, marker) == [marker], "the injected fault fired"
    assert deployed.job(sample_job)["status"] == "COMPLETE"


def test_a_bad_file_fails_with_a_reason_and_publishes_nothing(deployed, tmp_path):
    """The splitter refuses it and hands it to the failure function (the splitter cannot write
    the output bucket): FAILED with the reason, the FAILED manifest only, TranscodeJobFailed."""
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is a text file, not a video\n" * 200)
    job_id = deployed.upload(bad, "uploads/holiday.mp4")
    job = deployed.wait_for_job(job_id, until=lambda job: job["status"] == "FAILED" and job.get("failure_published"))

    assert job["status"] == "FAILED" and job["error_code"] == "UNSUPPORTED_INPUT", job
    assert job["stage"] == "failed:split" and job["attempts"] == 1
    assert deployed.keys(deployed.output_bucket, f"{job_id}/") == [f"{job_id}/manifest.json", f"{job_id}/report.html"]
    manifest = deployed.manifest(job_id)
    assert manifest["status"] == "FAILED" and manifest["error"]["code"] == "UNSUPPORTED_INPUT"
    assert deployed.executions_of(job_id) == []
    events = deployed.events(lambda found: events_of(found, "TranscodeJobFailed", job_id))
    [failed] = events_of(events, "TranscodeJobFailed", job_id)
    assert failed["error"]["code"] == "UNSUPPORTED_INPUT" and failed["failed_stage"] == "split"
    assert failed["manifest_key"] == f"{job_id}/manifest.json"


def test_an_empty_upload_fails_with_empty_input_and_a_folder_marker_or_another_prefix_makes_no_job(deployed, tmp_path):
    s3 = deployed.client("s3")
    s3.put_object(Bucket=deployed.input_bucket, Key="uploads/new folder/", Body=b"")  # the console's "Create folder"
    s3.put_object(Bucket=deployed.input_bucket, Key="elsewhere/clip.mp4", Body=SMALL_SAMPLE.read_bytes())  # outside the prefix
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    job_id = deployed.upload(empty, "uploads/empty.mp4")
    job = deployed.wait_for_job(job_id, until=lambda job: job["status"] == "FAILED" and job.get("failure_published"))
    assert job["error_code"] == "EMPTY_INPUT" and deployed.manifest(job_id)["error"]["code"] == "EMPTY_INPUT"
    # The folder marker was delivered before the empty file: its message was taken and made no job.
    deadline = time.monotonic() + 60
    while deployed.queue_depth("UploadsQueueUrl") and time.monotonic() < deadline:
        time.sleep(1)
    assert deployed.jobs_of("uploads/new folder/") == [] and deployed.jobs_of("elsewhere/clip.mp4") == []


def test_the_same_event_again_makes_one_job_and_one_execution(deployed):
    """S3 delivers at least once: the same notification twice more through the queue while the
    first runs (a live claim hands them back, they return and find the job started) and once
    more to the splitter directly after it finished: one job, one execution, nothing parked."""
    key = "uploads/city once.mp4"
    put = deployed.client("s3").put_object(Bucket=deployed.input_bucket, Key=key, Body=SMALL_SAMPLE.read_bytes())
    job_id = SourceObject(deployed.input_bucket, key, put["VersionId"], 0).job_id
    notification = json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
        "s3": {"bucket": {"name": deployed.input_bucket},
               "object": {"key": "uploads/city+once.mp4", "size": SMALL_SAMPLE.stat().st_size,
                          "eTag": put["ETag"].strip('"'), "versionId": put["VersionId"]}},
    }]})
    sqs = deployed.client("sqs")
    for _ in range(2):
        sqs.send_message(QueueUrl=deployed.outputs["UploadsQueueUrl"], MessageBody=notification)
    job = deployed.wait_for_job(job_id)
    assert job["status"] == "COMPLETE", job
    splitter = next(name for name in _function_names(deployed) if "Splitter" in name)
    response = deployed.client("lambda").invoke(FunctionName=splitter, Payload=notification.encode())
    assert "FunctionError" not in response, response["Payload"].read()
    assert json.loads(response["Payload"].read())["jobs"] == [{"job_id": job_id, "status": "DUPLICATE"}]
    deadline = time.monotonic() + 3 * SPLITTER_TIMEOUT_S
    while deployed.queue_depth("UploadsQueueUrl") and time.monotonic() < deadline:
        time.sleep(1)
    assert deployed.queue_depth("UploadsQueueUrl") == 0 and deployed.queue_depth("DeadLetterQueueUrl") == 0
    assert [e["name"] for e in deployed.executions_of(job_id)] == [f"{job_id}-1"]
    assert [item["job_id"] for item in deployed.jobs_of(key)] == [job_id] and deployed.job(job_id)["attempts"] == 1


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


def test_a_key_overwritten_while_its_job_runs_gives_two_jobs_each_true_to_its_upload(deployed, clips, tmp_path):
    key = "uploads/overwritten.mp4"
    first = deployed.upload(clips["first"], key)
    running = deployed.wait_for_job(first, until=lambda job: bool(job.get("execution")))
    second = deployed.upload(clips["second"], key)  # the same key, while the first job runs
    assert running["status"] == "RUNNING" and first != second
    jobs = {job_id: deployed.wait_for_job(job_id) for job_id in (first, second)}
    assert [job["status"] for job in jobs.values()] == ["COMPLETE", "COMPLETE"], jobs
    for job_id, clip in ((first, clips["first"]), (second, clips["second"])):
        manifest = check_against_source(deployed.download_job(job_id, tmp_path / job_id), clip)
        source = manifest["source"]
        assert source["size_bytes"] == clip.stat().st_size and source["has_audio"], (job_id, source)
    assert deployed.manifest(first)["source"]["duration_s"] == pytest.approx(6.0, abs=0.05)
    assert deployed.manifest(second)["source"]["duration_s"] == pytest.approx(4.0, abs=0.05)
    assert (deployed.manifest(second)["source"]["width"], deployed.manifest(second)["source"]["height"]) == (426, 240)
    assert sorted(item["job_id"] for item in deployed.jobs_of(key)) == sorted([first, second])
    # `vtp status --aws KEY` finds both jobs of the key, with their attempts.
    import os
    import subprocess

    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "vtp"), "status", "--aws", "--stack", STACK, "--json", key],
        capture_output=True, text=True, env={**os.environ, **deployed.localstack.aws_env()}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert sorted(item["job_id"] for item in found) == sorted([first, second])
    assert all(item["status"] == "COMPLETE" and item["attempts"] == 1 for item in found)


def test_stopping_a_running_job_fails_it_with_a_manifest_and_an_event_within_a_minute(deployed, clips, tmp_path):
    job_id = deployed.upload(clips["first"], "uploads/stopped.mp4")
    running = deployed.wait_for_job(job_id, until=lambda job: bool(job.get("execution")))
    arn = deployed.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + running["execution"]
    deployed.client("stepfunctions").stop_execution(executionArn=arn, error="Stopped", cause="a test stopped it")
    stopped = time.monotonic()
    job = deployed.wait_for_job(job_id, timeout_s=60, until=lambda job: job["status"] == "FAILED" and job.get("failure_published"))
    events = deployed.events(lambda found: events_of(found, "TranscodeJobFailed", job_id), wait_s=60 - (time.monotonic() - stopped))
    assert time.monotonic() - stopped < 60
    assert job["error_code"] == "INTERNAL_ERROR" and "was aborted" in job["error_message"], job
    manifest = deployed.manifest(job_id)
    assert manifest["status"] == "FAILED" and manifest["error"]["message"] == job["error_message"]
    [failed] = events_of(events, "TranscodeJobFailed", job_id)
    assert failed["error"]["code"] == "INTERNAL_ERROR" and failed["manifest_key"] == f"{job_id}/manifest.json"
    assert deployed.wait_for_execution(job_id)["status"] == "ABORTED"
    # An encoder still running when the execution stopped removes what it wrote afterwards.
    deadline = time.monotonic() + 30
    while deployed.keys(deployed.output_bucket, f"{job_id}/") != [f"{job_id}/manifest.json", f"{job_id}/report.html"] and time.monotonic() < deadline:
        time.sleep(1)
    assert deployed.keys(deployed.output_bucket, f"{job_id}/") == [f"{job_id}/manifest.json", f"{job_id}/report.html"]


def test_twenty_uploads_at_once_under_a_small_encoder_concurrency_all_complete(deployed, clips):
    """Encoder reserved concurrency 2, at most 4 jobs at once: the other uploads wait in the
    queue (sent back with a delay), the encoders' throttles are retried; nothing is lost."""
    keys = [f"uploads/batch/tiny-{n:02d}.mp4" for n in range(20)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        job_ids = list(pool.map(lambda key: deployed.upload(clips["tiny"], key), keys))
    assert len(set(job_ids)) == 20
    jobs = [deployed.wait_for_job(job_id, timeout_s=600) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["COMPLETE"] * 20, [(j["job_id"], j["status"], j.get("error_message")) for j in jobs]
    for job_id in job_ids:
        assert f"{job_id}/manifest.json" in deployed.keys(deployed.output_bucket, f"{job_id}/")
        assert [e["status"] for e in deployed.executions_of(job_id)] == ["SUCCEEDED"]
    assert deployed.queue_depth("DeadLetterQueueUrl") == 0
    encoder = next(name for name in _function_names(deployed) if "Encoder" in name)
    assert deployed.client("lambda").get_function_concurrency(FunctionName=encoder)["ReservedConcurrentExecutions"] == 2


def test_a_splitter_killed_after_its_claim_is_recovered_by_the_events_retry(deployed, early):
    """Its first attempt died right after the claim (as at a timeout or out of memory); the
    message came back after the visibility timeout, found the lease over and took over."""
    job_id = early["killed"]
    job = deployed.wait_for_job(job_id)
    assert job["status"] == "COMPLETE" and job["attempts"] == 2 and job["execution"] == f"{job_id}-2", job
    assert [e["name"] for e in deployed.executions_of(job_id)] == [f"{job_id}-2"]


def test_a_throttled_start_execution_is_retried_and_the_job_completes(deployed, early):
    job_id = early["throttled"]
    job = deployed.wait_for_job(job_id)
    assert job["status"] == "COMPLETE" and job["attempts"] == 1 and job["execution"] == f"{job_id}-1", job
    marker = f"jobs/{job_id}/faults/start-throttled.json"
    assert deployed.keys(deployed.work_bucket, marker) == [marker], "the throttle fired"


def test_a_fitted_ladder_runs_the_analysis_map_and_the_fit_before_the_encoders(fitted_upload, tmp_path):
    """VTP_LADDER=auto: the splitter names the analysis items, the Choice sends the job through
    AnalyseChunks (one analyser per chunk) and FitLadder (the fitted plan into job.json), and
    the encoders make the fitted rungs with capped VBR; the manifest shows the fit."""
    auto, job_id = fitted_upload.result(timeout=AUTO_DEPLOY_TIMEOUT_S)
    job = auto.wait_for_job(job_id)
    assert job["status"] == "COMPLETE", job
    assert {"split", "analyse", "encode", "merge", "done"} <= set(job["stage_times"])
    execution = auto.wait_for_execution(job_id)
    assert execution["status"] == "SUCCEEDED"

    folder = auto.download_job(job_id, tmp_path)
    manifest = check_against_source(folder, SAMPLE)
    chunks = manifest["chunks"]
    assert chunks == 2  # 16.4 s in chunks of 8 s

    # The execution's history: the Choice, the analysis map, the fit, the encode map, then the
    # rework plan and (only when it found chunk-rungs to encode again) the rework map.
    sfn = auto.client("stepfunctions")
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution["executionArn"])
    events = [e for page in pages for e in page["events"]]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    rework_items = auto.get_json(auto.work_bucket, f"jobs/{job_id}/rework_chunks.json")
    rework_map = ["ReworkChunks"] if rework_items else []
    assert entered[:7 + len(rework_map)] == [
        "FittedLadder", "AnalyseChunks", "FitLadder", "EncodeChunks", "ReworkFitted", "PlanRework", "AnyRework",
        *rework_map], entered
    assert entered[7 + len(rework_map)] == "MergeAndPublish", entered
    runs = {run["mapRunArn"].rsplit("/", 1)[1].split(":")[0]: run["mapRunArn"]
            for run in sfn.list_map_runs(executionArn=execution["executionArn"])["mapRuns"]}
    assert set(runs) == {"AnalyseChunks", "EncodeChunks", *rework_map}
    # One chunk in analyse_every (3 by default) is analysed: here one of the two.
    analysed_items = [i["chunk"]["index"] for i in auto.get_json(auto.work_bucket, f"jobs/{job_id}/analysis_chunks.json")]
    analysed = len(analysed_items)
    for label, arn in runs.items():
        counts = sfn.describe_map_run(mapRunArn=arn)["itemCounts"]
        wanted = {"AnalyseChunks": analysed, "EncodeChunks": chunks, "ReworkChunks": len(rework_items)}[label]
        assert counts["total"] == counts["succeeded"] == wanted, (label, counts)
    [planned] = [e for e in events if e["type"] == "LambdaFunctionSucceeded"
                 and "rework_key" in e["lambdaFunctionSucceededEventDetails"]["output"]]
    planned = json.loads(planned["lambdaFunctionSucceededEventDetails"]["output"])
    assert planned["items"] == len(rework_items)
    # The manifest records as many reworked chunk-rungs as the rework map's items hold; a
    # reworked chunk's applied facts are kept beside its original ones.
    assert manifest["ladder"]["rework"]["chunk_rungs"] == sum(len(i["rework"]["rungs"]) for i in rework_items)
    assert manifest["ladder"]["rework"]["chunk_rungs"] == planned["chunk_rungs"]
    assert auto.keys(auto.work_bucket, f"jobs/{job_id}/reworked/") == [
        f"jobs/{job_id}/reworked/chunk_{i['chunk']['index']:05d}.json" for i in rework_items]
    assert ("rework" in job["stage_times"]) == bool(rework_items)
    [fit] = [e for e in events if e["type"] == "LambdaFunctionSucceeded"
             and "renditions" in e["lambdaFunctionSucceededEventDetails"]["output"]]
    fitted = json.loads(fit["lambdaFunctionSucceededEventDetails"]["output"])
    assert fitted["renditions"] == [r["name"] for r in manifest["renditions"]] and fitted["analysed"] == analysed
    # Each analyser kept its chunk's trial points beside job.json.
    assert auto.keys(auto.work_bucket, f"jobs/{job_id}/analysis/") == [
        f"jobs/{job_id}/analysis/chunk_{i:05d}.json" for i in sorted(analysed_items)]

    # The manifest: the fitted ladder, its analysis and fit, capped VBR rungs.
    assert manifest["ladder"]["mode"] == "auto" and manifest["ladder"]["analysis"]["chunks"] == analysed
    assert manifest["stages"]["analyse"]["chunks"] == analysed
    assert manifest["stages"]["analyse"]["max"]["memory_mb"] == contract.ANALYSER_MEMORY_MB
    assert manifest["stages"]["fit"]["memory_mb"] == contract.LADDER_MEMORY_MB
    assert len(manifest["renditions"]) >= 2
    for rendition in manifest["renditions"]:
        assert rendition["target_vmaf"] and rendition["maxrate_kbps"] > 0 and rendition["rate_factor"], rendition
        # Capped VBR keeps every segment's rate near the rung's average.
        assert rendition["peak_bitrate_kbps"] <= 1.5 * rendition["measured_bitrate_kbps"], rendition
    bars = manifest["timeline"]["bars"]
    analysed = [b for b in bars if b["stage"] == "analyse"]
    assert sorted(b["chunk"] for b in analysed) == sorted(analysed_items)
    assert all(b["worker"] and b["memory_mb"] == contract.ANALYSER_MEMORY_MB for b in analysed)
    assert [b["stage"] for b in bars].count("fit") == 1 and [b["stage"] for b in bars].count("encode") == chunks
    assert max(b["end_s"] for b in analysed) <= min(b["start_s"] for b in bars if b["stage"] == "encode")
    assert {"Lambda ladder analysis", "Lambda ladder fit"} <= {line["item"] for line in manifest["cost"]["lines"]}


def test_the_localstack_runner_runs_the_cloud_flow_and_downloads_the_outputs(deployed, tmp_path):
    import os
    import subprocess

    env = {**os.environ, "AWS_ENDPOINT_URL": deployed.localstack.endpoint, "VTP_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), str(REPO / "testing" / "localstack" / "run.py"), "--stack", STACK,
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
