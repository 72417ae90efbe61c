"""Tests of the test infrastructure: LocalStack started by the suite and the
vtp-local-process Lambda executor (testing/localstack/).

Functions are created from small zips with boto3 against the endpoint and
invoked; no Docker. The pure helpers of the executor (environment rewriting,
runtime names) are tested first, without LocalStack.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "testing" / "localstack"))
from vtp_localstack_executor.environment import build_env, rewrite_value  # noqa: E402
from vtp_localstack_executor.interpreters import runtime_version  # noqa: E402

sys.path.pop(0)

pytestmark = pytest.mark.timeout(120)
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
RUNTIME = "python3.12"


# --------------------------------------------------------------------------
# pure helpers (no LocalStack)

MAPPING = {"/opt": "/L", "/var/task": "/C", "/var/runtime": "/R"}


@pytest.mark.parametrize("key,value,expected", [
    ("VTP_FFMPEG_DIR", "/opt/bin", "/L/bin"),
    ("X", "/opt", "/L"),
    ("X", "/optional/x", "/optional/x"),
    ("X", "/var/task/a.py", "/C/a.py"),
    ("X", "/var/runtime", "/R"),
    ("X", "s3://bucket/opt/x", "s3://bucket/opt/x"),
    ("X", "/opt/a:/opt/b", "/L/a:/opt/b"),  # not a *PATH variable: prefix only
    ("LD_LIBRARY_PATH", "/opt/lib:/usr/lib:/var/task/lib", "/L/lib:/usr/lib:/C/lib"),
    ("X", "/tmp/work", "/tmp/work"),
])
def test_rewrite_value(key, value, expected):
    assert rewrite_value(key, value, MAPPING) == expected


def test_build_env_lays_out_paths_like_lambda(tmp_path):
    env = build_env(
        {"AWS_REGION": "eu-west-1", "LAMBDA_TASK_ROOT": "/var/task", "VTP_FFMPEG_DIR": "/opt/bin",
         "AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 512},
        code_dir="/C", opt_dir="/L", runtime_dir="/R", env_dir=str(tmp_path), python="/py/bin/python",
        python_version=(3, 12), host_env={"PATH": "/usr/bin:/bin", "HOME": "/root", "AWS_PROFILE": "x"},
    )
    assert env["VTP_FFMPEG_DIR"] == "/L/bin"
    assert env["LAMBDA_TASK_ROOT"] == "/C"
    assert env["PYTHONPATH"].split(":")[:3] == ["/C", "/L/python/lib/python3.12/site-packages", "/L/python"]
    assert env["PATH"].split(":") == ["/py/bin", "/usr/bin", "/bin", "/L/bin"]
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["HOME"].startswith(str(tmp_path)) and env["TMPDIR"].startswith(str(tmp_path))
    assert "AWS_PROFILE" not in env  # the host's AWS settings do not leak in
    assert env["AWS_ACCESS_KEY_ID"] == "test"


def test_runtime_version():
    assert runtime_version("python3.12") == (3, 12)
    assert runtime_version("nodejs20.x") is None


# --------------------------------------------------------------------------
# helpers


def make_zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) & 0xFFFF) << 16
            z.writestr(info, data)
    return buf.getvalue()


HANDLER = textwrap.dedent('''
    import json, os, subprocess, sys, time
    import boto3

    print("init of app.py")

    def handler(event, context):
        print("event", json.dumps(event))
        action = event.get("action")
        if action == "raise":
            raise ValueError("bad input: " + str(event.get("why")))
        if action == "sleep":
            time.sleep(event["seconds"])
        if action == "env":
            ffdir = os.environ.get("VTP_FFMPEG_DIR", "")
            tool = os.path.join(ffdir, "tool")
            out = subprocess.run([tool], capture_output=True, text=True).stdout if os.path.exists(tool) else None
            try:
                import layerlib
                layer_value = layerlib.VALUE
            except ImportError:
                layer_value = None
            keys = ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_TIMEOUT", "STAGE",
                    "VTP_FFMPEG_DIR", "LAMBDA_TASK_ROOT", "AWS_ACCESS_KEY_ID", "_HANDLER"]
            return {"env": {k: os.environ.get(k) for k in keys}, "tool": out, "layer": layer_value,
                    "cwd": os.getcwd(), "python": list(sys.version_info[:2]),
                    "remaining_ms": context.get_remaining_time_in_millis(),
                    "request_id": context.aws_request_id}
        if action == "s3":
            s3 = boto3.client("s3")
            s3.put_object(Bucket=event["bucket"], Key="from-lambda.txt", Body=b"written by the handler")
            return {"written": True}
        if action == "log":
            print("LOG-TOKEN", event["token"])
            print("to stderr", event["token"], file=sys.stderr)
        return {"ok": True, "echo": event}
''')


@pytest.fixture(scope="module")
def lam(localstack):
    return localstack.client("lambda")


def create_function(lam, name: str, *, timeout: int = 10, env: dict | None = None,
                    layers: list[str] | None = None, handler_src: str = HANDLER, memory: int = 256) -> None:
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": handler_src})}, Timeout=timeout, MemorySize=memory,
        Environment={"Variables": env or {}}, Layers=layers or [],
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})


def invoke(lam, name: str, event: dict, **kw) -> tuple[dict, dict, str]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail", **kw)
    payload = json.loads(resp["Payload"].read() or b"null")
    logs = base64.b64decode(resp.get("LogResult", "")).decode(errors="replace")
    return resp, payload, logs


def wait_gone(pids: list[int], deadline_s: float = 10.0) -> list[int]:
    end = time.monotonic() + deadline_s
    alive = list(pids)
    while alive and time.monotonic() < end:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.1)
    return alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def fn(lam):
    name = f"exec-{uuid.uuid4().hex[:8]}"
    create_function(lam, name, timeout=10)
    yield name
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------
# LocalStack + executor


@pytest.mark.integration
def test_invoke_returns_payload_and_measures_latency(lam, fn):
    t0 = time.monotonic()
    resp, payload, logs = invoke(lam, fn, {"hello": "world"})
    cold = time.monotonic() - t0
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert payload == {"ok": True, "echo": {"hello": "world"}}
    assert re.search(r"START RequestId: \S+ Version: \$LATEST", logs)
    assert "init of app.py" in logs and "REPORT RequestId:" in logs
    warm = []
    for i in range(3):
        t0 = time.monotonic()
        _, payload, _ = invoke(lam, fn, {"i": i})
        warm.append(time.monotonic() - t0)
        assert payload["echo"] == {"i": i}
    print(f"\ncold invoke {cold:.3f} s; warm invokes {', '.join(f'{w:.3f}' for w in warm)} s")
    assert min(warm) < 2.0


@pytest.mark.integration
def test_handler_error_has_type_and_stack_trace(lam, fn):
    resp, payload, logs = invoke(lam, fn, {"action": "raise", "why": "nope"})
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "bad input: nope"
    assert payload["stackTrace"] and 'app.py", line' in payload["stackTrace"][-1]
    assert "in handler" in payload["stackTrace"][-1]
    assert "[ERROR] ValueError: bad input: nope" in logs
    # the environment survives a handled error
    _, payload, _ = invoke(lam, fn, {"after": "error"})
    assert payload["ok"] is True


@pytest.mark.integration
def test_handler_reaches_localstack_with_boto3(localstack, lam, fn):
    s3 = localstack.client("s3")
    bucket = f"exec-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    resp, payload, _ = invoke(lam, fn, {"action": "s3", "bucket": bucket})
    assert payload == {"written": True}, payload
    assert s3.get_object(Bucket=bucket, Key="from-lambda.txt")["Body"].read() == b"written by the handler"


@pytest.mark.integration
def test_timeout_is_enforced_and_environment_recovers(localstack, lam):
    name = f"exec-timeout-{uuid.uuid4().hex[:6]}"
    create_function(lam, name, timeout=1)
    try:
        invoke(lam, name, {})  # warm up: the timeout covers the handler, not the import
        before = set(localstack.lambda_pids(name))
        t0 = time.monotonic()
        resp, payload, logs = invoke(lam, name, {"action": "sleep", "seconds": 20})
        took = time.monotonic() - t0
        assert resp["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "Sandbox.Timedout"
        assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
        assert "Status: timeout" in logs
        assert took < 6, took
        # the sleeping worker was killed, the init stays
        if before:
            assert len(before) == 2, before
            end = time.monotonic() + 5
            while len([p for p in before if _alive(p)]) > 1 and time.monotonic() < end:
                time.sleep(0.05)
            assert len([p for p in before if _alive(p)]) == 1
        _, payload, _ = invoke(lam, name, {"again": 1})
        assert payload["ok"] is True
    finally:
        lam.delete_function(FunctionName=name)


@pytest.mark.integration
def test_environment_variables_and_layer_under_opt(localstack, lam):
    layer = lam.publish_layer_version(
        LayerName=f"tools-{uuid.uuid4().hex[:6]}",
        Content={"ZipFile": make_zip(
            {"bin/tool": "#!/bin/sh\necho tool-from-layer\n", "python/layerlib.py": "VALUE = 42\n"},
            modes={"bin/tool": 0o755})},
        CompatibleRuntimes=[RUNTIME],
    )
    name = f"exec-env-{uuid.uuid4().hex[:6]}"
    create_function(lam, name, timeout=7, memory=384, layers=[layer["LayerVersionArn"]],
                    env={"STAGE": "it", "VTP_FFMPEG_DIR": "/opt/bin"})
    try:
        resp, payload, _ = invoke(lam, name, {"action": "env"})
        assert "FunctionError" not in resp, payload
        env = payload["env"]
        assert env["AWS_ENDPOINT_URL"] == localstack.endpoint
        assert env["AWS_REGION"] == "us-east-1"
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "384"
        assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
        assert env["STAGE"] == "it"
        assert env["_HANDLER"] == "app.handler"
        assert env["AWS_ACCESS_KEY_ID"]
        # /opt/bin was rewritten to the unzipped layer, and the tool in it runs
        assert env["VTP_FFMPEG_DIR"] != "/opt/bin" and env["VTP_FFMPEG_DIR"].endswith("/bin")
        assert payload["tool"] == "tool-from-layer\n"
        assert payload["layer"] == 42  # <layer>/python is on sys.path, as /opt/python is
        assert payload["cwd"] == env["LAMBDA_TASK_ROOT"]
        assert payload["python"] == [3, 12]
        assert 0 < payload["remaining_ms"] <= 7000
    finally:
        lam.delete_function(FunctionName=name)
        lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])


@pytest.mark.integration
def test_logs_reach_cloudwatch(localstack, lam, fn):
    token = uuid.uuid4().hex
    invoke(lam, fn, {"action": "log", "token": token})
    logs = localstack.client("logs")
    deadline = time.monotonic() + 15
    messages: list[str] = []
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        messages = [e["message"] for e in events]
        if any(f"LOG-TOKEN {token}" in m for m in messages) and any(f"to stderr {token}" in m for m in messages):
            break
        time.sleep(0.3)
    assert any(f"LOG-TOKEN {token}" in m for m in messages), messages[-10:]
    assert any(f"to stderr {token}" in m for m in messages)
    assert any(m.startswith("REPORT RequestId:") for m in messages)


@pytest.mark.integration
def test_async_invoke_runs(localstack, lam, fn):
    token = uuid.uuid4().hex
    resp = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"action": "log", "token": token}))
    assert resp["StatusCode"] == 202
    logs = localstack.client("logs")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}")["events"]
        if any(f"LOG-TOKEN {token}" in e["message"] for e in events):
            return
        time.sleep(0.3)
    pytest.fail("the async invocation left no log")


@pytest.mark.integration
def test_no_process_left_after_delete_function(localstack, lam):
    if localstack.external:
        pytest.skip("process checks need the LocalStack this suite started")
    name = f"exec-del-{uuid.uuid4().hex[:6]}"
    create_function(lam, name)
    invoke(lam, name, {})
    pids = localstack.lambda_pids(name)
    assert len(pids) == 2, pids  # the init and its worker
    lam.delete_function(FunctionName=name)
    assert wait_gone(pids) == []


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, local address) of the listening TCP sockets of ``pids`` (from ``ss -ltnpH``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                found.append((pid, cols[3]))
    return found


def _group_pids(pgid: int) -> set[int]:
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid:
                    out.add(int(name))
            except OSError:
                pass
    return out


@pytest.mark.integration
def test_only_loopback_is_bound(localstack, lam, fn):
    if localstack.external:
        pytest.skip("checks the LocalStack this suite started")
    invoke(lam, fn, {})  # at least one Lambda environment is up
    localstack.client("dynamodb").list_tables()
    pids = _group_pids(localstack.pid) | set(localstack.lambda_pids())
    sockets = _listening(pids)
    assert any(pid == localstack.pid for pid, _ in sockets), sockets
    assert any(pid != localstack.pid for pid, _ in sockets), "no Lambda init listening?"
    bad = [(pid, addr) for pid, addr in sockets if not (addr.startswith("127.0.0.1:") or addr.startswith("[::1]:"))]
    assert bad == [], bad


@pytest.mark.integration
def test_stop_leaves_no_process(localstack_service_module, tmp_path):
    """A second LocalStack: start, run a function, stop -> nothing of it remains."""
    if localstack_service_module.external_endpoint():
        pytest.skip("an external endpoint is configured")
    svc = localstack_service_module.LocalStackService(workdir=tmp_path / "ls", run_setup=False)
    svc.start()
    try:
        lam2 = svc.client("lambda")
        create_function(lam2, "stopper")
        _, payload, _ = invoke(lam2, "stopper", {"x": 1})
        assert payload["ok"] is True
        pids = set(svc.lambda_pids()) | _group_pids(svc.pid)
        assert svc.pid in pids and len(pids) >= 3
    finally:
        # LocalStack often hangs in its own shutdown right after an invocation
        # (internal log/metric requests to a gateway that already stopped):
        # a short deadline also exercises the SIGKILL path
        svc.stop(timeout=3, keep_logs=True)
    assert wait_gone(sorted(pids), 5) == []
    assert svc.log_path.exists()


@pytest.mark.integration
def test_import_error_is_reported_like_lambda(lam):
    name = f"exec-imp-{uuid.uuid4().hex[:6]}"
    create_function(lam, name, handler_src="import not_a_module_anywhere\n")
    try:
        resp, payload, logs = invoke(lam, name, {})
        assert resp["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "Runtime.ImportModuleError"
        assert "not_a_module_anywhere" in payload["errorMessage"]
    finally:
        lam.delete_function(FunctionName=name)


@pytest.mark.integration
def test_dynamodb_works_without_java(localstack):
    """DynamoDB is served by moto (PROVIDER_OVERRIDE_DYNAMODB=vtp_moto): no JDK download."""
    ddb = localstack.client("dynamodb")
    table = f"exec-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    ddb.delete_table(TableName=table)
