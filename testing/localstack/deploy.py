"""Deploying the project's CDK app to LocalStack with cdklocal (test infrastructure).

The same ``app.py`` and stack as for AWS; only the CLI's target differs.
``cdklocal`` and ``cdk`` come from the repository's package.json
(``npm ci`` when node_modules is missing).

    from service import LocalStackService
    from deploy import bootstrap, deploy
    with LocalStackService() as ls:
        bootstrap(ls.endpoint)
        outputs = deploy(ls.endpoint, "VideoTranscodingPipeline", context={"vtp:destroy-on-delete": "true"})

CLI (against a LocalStack started with ``service.py start``, or any endpoint):

    python testing/localstack/deploy.py --endpoint http://127.0.0.1:PORT [-c key=value ...]

Facts this relies on (shared/notes/localstack-on-host.md): cdklocal needs
``AWS_ENDPOINT_URL`` *and* ``AWS_ENDPOINT_URL_S3`` (its default host needs
DNS); ``Custom::`` resources are not deployed by LocalStack's free edition.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ACCOUNT = "000000000000"  # LocalStack's default account for the test/test keys
DEFAULT_REGION = "us-east-1"
OUT_DIR = REPO / ".work" / "localstack" / "cdk.out"  # not cdk.out: synths for AWS use that one


def out_dir(endpoint: str) -> Path:
    """The cloud assembly folder of deploys to ``endpoint``: one per LocalStack port, so that
    two test sessions deploying at the same time (two LocalStacks) do not share one."""
    port = endpoint.rstrip("/").rsplit(":", 1)[-1]
    return OUT_DIR / (port if port.isdigit() else "default")
BOOTSTRAP_STACK = "CDKToolkit"


class DeployError(RuntimeError):
    pass


def cdk_bin(name: str = "cdklocal") -> Path:
    return REPO / "node_modules" / ".bin" / name


def ensure_cdk_cli() -> Path:
    """node_modules/.bin/cdklocal, installing package.json's pins with ``npm ci`` if missing."""
    exe = cdk_bin()
    if not exe.exists():
        lock = REPO / "package-lock.json"
        cmd = ["npm", "ci" if lock.exists() else "install", "--no-audit", "--no-fund"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0 or not exe.exists():
            raise DeployError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return exe


def cdk_env(endpoint: str, region: str = DEFAULT_REGION, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for cdk/cdklocal (and the AWS CLI) aimed at ``endpoint``."""
    env = dict(os.environ if base is None else base)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(var, None)
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "CDK_DEFAULT_ACCOUNT": ACCOUNT,
        "CDK_DEFAULT_REGION": region,
        "CDK_DISABLE_CLI_TELEMETRY": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "NO_PROXY": ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p),
    })
    return env


def run_cdk(args: list[str], endpoint: str, *, region: str = DEFAULT_REGION, timeout: float = 600,
            log_path: Path | None = None) -> str:
    """Runs ``cdklocal ARGS`` in the repository root; returns its output, raises DeployError with the tail."""
    exe = ensure_cdk_cli()
    t0 = time.monotonic()
    try:
        proc = subprocess.run([str(exe), *args], cwd=REPO, env=cdk_env(endpoint, region),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise DeployError(f"cdklocal {' '.join(args)} ran over {timeout:.0f} s") from e
    out = proc.stdout + proc.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as f:
            f.write(f"$ cdklocal {' '.join(args)}  ({time.monotonic() - t0:.1f} s, exit {proc.returncode})\n{out}\n")
    if proc.returncode != 0:
        raise DeployError(f"cdklocal {' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}")
    return out


def _stack_status(endpoint: str, stack: str, region: str) -> str | None:
    import boto3  # the project's venv has it

    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=region,
                       aws_access_key_id="test", aws_secret_access_key="test")
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except cfn.exceptions.ClientError:
        return None


def bootstrap(endpoint: str, region: str = DEFAULT_REGION, log_path: Path | None = None) -> float:
    """``cdklocal bootstrap aws://ACCOUNT/REGION`` unless the CDKToolkit stack is
    already complete; returns the seconds spent."""
    t0 = time.monotonic()
    if (_stack_status(endpoint, BOOTSTRAP_STACK, region) or "").endswith("_COMPLETE"):
        return 0.0
    run_cdk(["bootstrap", f"aws://{ACCOUNT}/{region}", "--no-notices", "--output", str(out_dir(endpoint))],
            endpoint, region=region, log_path=log_path)
    return time.monotonic() - t0


def deploy(endpoint: str, stack: str, *, context: dict[str, str] | None = None,
           parameters: dict[str, str] | None = None, region: str = DEFAULT_REGION,
           log_path: Path | None = None, timeout: float = 900) -> dict[str, str]:
    """``cdklocal deploy STACK`` (no approval prompt); returns the stack outputs."""
    folder = out_dir(endpoint)
    outputs_file = folder / f"{stack}-outputs.json"
    args = ["deploy", stack, "--require-approval", "never", "--no-notices", "--progress", "events",
            "--output", str(folder), "--outputs-file", str(outputs_file)]
    for key, value in (context or {}).items():
        args += ["-c", f"{key}={value}"]
    for key, value in (parameters or {}).items():
        args += ["--parameters", f"{stack}:{key}={value}"]
    folder.mkdir(parents=True, exist_ok=True)
    run_cdk(args, endpoint, region=region, log_path=log_path, timeout=timeout)
    return json.loads(outputs_file.read_text()).get(stack, {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Bootstrap and deploy the CDK app to LocalStack.")
    ap.add_argument("--endpoint", default=os.environ.get("VTP_LOCALSTACK_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL"))
    ap.add_argument("--stack", default=None, help="default: vtp:stack-name of cdk.json")
    ap.add_argument("--region", default=DEFAULT_REGION)
    ap.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if not args.endpoint:
        state = REPO / ".work" / "localstack" / "localstack.json"
        if state.exists():
            args.endpoint = json.loads(state.read_text())["endpoint"]
        else:
            ap.error("no endpoint: pass --endpoint, set AWS_ENDPOINT_URL, or run service.py start")
    stack = args.stack or json.loads((REPO / "cdk.json").read_text())["context"]["vtp:stack-name"]
    context = dict(kv.split("=", 1) for kv in args.context)
    log_path = OUT_DIR.parent / "deploy.log"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(f"{args.endpoint}/_localstack/health", timeout=5).read()
        took = bootstrap(args.endpoint, args.region, log_path)
        print(f"bootstrap: {took:.1f} s", file=sys.stderr)
        t0 = time.monotonic()
        outputs = deploy(args.endpoint, stack, context=context, region=args.region, log_path=log_path)
        print(f"deploy: {time.monotonic() - t0:.1f} s (log {log_path})", file=sys.stderr)
    except (DeployError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(outputs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
