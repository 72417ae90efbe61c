"""The cloud flow on this machine: deploy to LocalStack, upload, follow, download.

    .venv/bin/python testing/localstack/run.py INPUT [INPUT ...] [--out out/] [--stack NAME]
        [--ladder 480p,360p] [--preset veryfast] ...   (the encoding options of `vtp run`)

Uses the LocalStack given by `AWS_ENDPOINT_URL`/`VTP_LOCALSTACK_ENDPOINT` or started with
`testing/localstack/service.py start`, else starts one for the command. Deploys the CDK
app there if the stack is missing, uploads each input to the input bucket, follows the
job in the jobs table with a progress bar and downloads the outputs. Test tooling, like the
rest of this folder: it needs a checkout of this repository, and vtp installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vtp import contract
from vtp.core.config import PipelineConfig
from vtp.core.errors import ErrorCode, PipelineError

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parents[1]
sys.path.insert(0, str(TOOLS))  # this folder's service.py and deploy.py

import deploy  # noqa: E402
import service  # noqa: E402

REGION = "us-east-1"
JOB_TIMEOUT_S = 3600


def settings_context(config: PipelineConfig) -> str:
    ladder = ",".join(rung.name for rung in config.ladder)
    return (
        f"VTP_LADDER={ladder};VTP_GOP_S={config.gop_s:g};VTP_CHUNK_S={config.chunk_s:g};"
        f"VTP_SEGMENT_S={config.segment_s:g};VTP_PRESET={config.preset};VTP_RATE_CONTROL={config.rate_control}"
    )


def _running_endpoint(service) -> str | None:
    given = service.external_endpoint()
    if given:
        return given
    if service.PID_FILE.exists():
        state = json.loads(service.PID_FILE.read_text())
        if service.health(state["endpoint"]):
            return state["endpoint"]
    return None


def run_on_localstack(inputs: list[Path], out: Path, config: PipelineConfig, *, stack: str | None = None) -> int:
    from rich.console import Console

    console, err = Console(), Console(stderr=True)
    endpoint = _running_endpoint(service)
    started = None
    if endpoint is None:
        err.print("starting LocalStack on 127.0.0.1 ...")
        started = service.LocalStackService().start()
        endpoint = started.endpoint
    try:
        stack = stack or json.loads((REPO / "cdk.json").read_text())["context"]["vtp:stack-name"]
        outputs = _stack_outputs(endpoint, stack)
        if outputs is None:
            err.print(f"deploying {stack} to {endpoint} (bootstrap + cdklocal deploy, about a minute) ...")
            deploy.bootstrap(endpoint)
            outputs = deploy.deploy(
                endpoint, stack, context={"vtp:stack-name": stack, "vtp:settings": settings_context(config)}
            )
        else:
            err.print(f"using the deployed {stack} at {endpoint} (its own pipeline settings)")
        failures = 0
        for source in inputs:
            failures += 0 if _run_one(source, out, endpoint, outputs, console, err) else 1
        return 1 if failures else 0
    finally:
        if started is not None:
            started.stop()


def _client(endpoint: str, name: str):
    import boto3

    return boto3.client(
        name, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
    )


def _stack_outputs(endpoint: str, stack: str) -> dict[str, str] | None:
    from botocore.exceptions import ClientError

    try:
        found = _client(endpoint, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError:
        return None
    if not found["StackStatus"].endswith("_COMPLETE") or "DELETE" in found["StackStatus"]:
        return None
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def _run_one(source: Path, out: Path, endpoint: str, outputs: dict[str, str], console, err) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vtp.aws.pipeline import SourceObject

    if not source.is_file():
        err.print(f"vtp: {source}: {ErrorCode.INPUT_NOT_FOUND}: no such file", markup=False, highlight=False, soft_wrap=True)
        return False
    s3 = _client(endpoint, "s3")
    dynamodb = _client(endpoint, "dynamodb")
    bucket = outputs[contract.OUTPUT_INPUT_BUCKET]
    key = f"uploads/{int(time.time())}/{source.name}"
    started = time.monotonic()
    s3.upload_file(str(source), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    version = head.get("VersionId") if head.get("VersionId") not in (None, "null") else head["ETag"].strip('"')
    job_id = SourceObject(bucket, key, version, head["ContentLength"]).job_id

    status = {}
    with Progress(
        TextColumn(f"[bold]{source.name}[/] {{task.description:<12}}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("waiting", total=None)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            item = dynamodb.get_item(
                TableName=outputs[contract.OUTPUT_JOBS_TABLE], Key={"job_id": {"S": job_id}}, ConsistentRead=True
            ).get("Item")
            status = {k: list(v.values())[0] for k, v in (item or {}).items()}
            total = int(status.get("chunks_total", 0) or 0)
            progress.update(
                task, description=str(status.get("stage", "waiting")),
                total=total or None, completed=int(status.get("chunks_done", 0) or 0),
            )
            if status.get("status") in ("COMPLETE", "FAILED"):
                break
            time.sleep(1.0)
    if status.get("status") not in ("COMPLETE", "FAILED"):
        err.print(f"vtp: {source}: job {job_id} did not finish within {JOB_TIMEOUT_S} s", markup=False)
        return False

    folder = out / job_id
    output_bucket = outputs[contract.OUTPUT_OUTPUT_BUCKET]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=output_bucket, Prefix=f"{job_id}/")
    for page in pages:
        for item in page.get("Contents", []):
            target = out / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(output_bucket, item["Key"], str(target))
    from vtp.cli import report_complete, report_failed
    from vtp.core.manifest import Manifest

    manifest = Manifest.from_dict(json.loads((folder / "manifest.json").read_text()))
    if manifest.status != "COMPLETE":
        report_failed(console, err, source, job_id, folder, manifest.error or {})
        return False
    report_complete(console, job_id, folder, manifest, time.monotonic() - started, where=" (LocalStack)")
    return True


def main(argv: list[str] | None = None) -> int:
    from vtp.cli import add_encoding_options, config_from

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--stack", default=None, help="the stack (default: cdk.json's vtp:stack-name)")
    add_encoding_options(parser)
    args = parser.parse_args(argv)
    try:
        return run_on_localstack(args.inputs, args.out, config_from(args), stack=args.stack)
    except PipelineError as error:
        print(f"run.py: {error.code}: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
