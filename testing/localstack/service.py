"""LocalStack as a service that tests and developers start and stop.

Test infrastructure. Importable from the project's venv without localstack
installed: it only starts ``.venv-localstack/bin/python -m
localstack.runtime.main`` (made by ``testing/localstack/setup.sh``) as a
child process in its own process group, bound to 127.0.0.1 only.

    from testing.localstack.service import LocalStackService   # or load by path
    with LocalStackService() as ls:
        s3 = ls.client("s3")

Developers:

    python testing/localstack/service.py start    # prints the endpoint, writes a pid file
    python testing/localstack/service.py status
    python testing/localstack/service.py stop

If ``VTP_LOCALSTACK_ENDPOINT`` or ``AWS_ENDPOINT_URL`` is set, that endpoint
is used (and health-checked) instead of starting one; ``stop()`` then leaves
it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = Path(os.environ.get("VTP_LOCALSTACK_VENV") or REPO / ".venv-localstack")
SETUP_SH = HERE / "setup.sh"
EXECUTOR_NAME = "vtp-local-process"
DYNAMODB_PROVIDER = "vtp_moto"
SESSION_MARKER = "VTP_LOCALSTACK_SESSION"
# What the pipeline and `cdklocal bootstrap`/`deploy` use. Services load
# lazily, so listing one costs nothing until it is called.
DEFAULT_SERVICES = (
    "s3,lambda,stepfunctions,dynamodb,iam,sts,cloudformation,logs,events,"
    "ssm,ecr,kms,cloudwatch,sqs,sns"
)
# Host variables LocalStack may see; everything else is left out so that a
# developer's shell (AWS_*, DEBUG, ...) cannot change its behaviour.
HOST_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "JAVA_HOME",
                    "VTP_LAMBDA_PYTHON", "VTP_LAMBDA_ENFORCE_MEMORY", "VTP_LAMBDA_KEEP_ENV_DIRS")
STATE_DIR = REPO / ".work" / "localstack"  # .work/ is git-ignored
PID_FILE = STATE_DIR / "localstack.json"
DEFAULT_REGION = "us-east-1"


class LocalStackError(RuntimeError):
    pass


def external_endpoint() -> str | None:
    """An endpoint given by the environment (a LocalStack someone else runs)."""
    for var in ("VTP_LOCALSTACK_ENDPOINT", "AWS_ENDPOINT_URL"):
        value = os.environ.get(var, "").strip()
        if value:
            return value.rstrip("/")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(run_setup: bool = True) -> Path:
    """The localstack venv's python; runs setup.sh (idempotent, < 0.1 s when
    done) when allowed, else fails with a clear message if the venv is missing."""
    if run_setup:
        proc = subprocess.run(["bash", str(SETUP_SH)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalStackError(
                f"{SETUP_SH} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    py = venv_python()
    if not py.exists():
        raise LocalStackError(f"{py} is missing: run `bash {SETUP_SH.relative_to(REPO)}` first")
    return py


def health(endpoint: str, timeout: float = 2.0) -> dict | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/_localstack/health", timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except (OSError, ValueError):
        return None


def _kill_marked(session: str) -> list[int]:
    """SIGKILL processes whose environment carries ``VTP_LOCALSTACK_SESSION=session``
    (Lambda children the executor started and that outlived LocalStack)."""
    killed = []
    for pid in lambda_processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            continue
    return killed


def lambda_processes(session: str, function_name: str | None = None) -> list[int]:
    """PIDs of Lambda processes: their environment has ``VTP_LAMBDA_ENV_ID``,
    ``VTP_LOCALSTACK_SESSION=session`` (LocalStack itself has only the latter)
    and ``AWS_LAMBDA_FUNCTION_NAME=function_name`` when given."""
    needles = [f"{SESSION_MARKER}={session}".encode()]
    if function_name:
        needles.append(f"AWS_LAMBDA_FUNCTION_NAME={function_name}".encode())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if (all(n in env for n in needles) and any(e.startswith(b"VTP_LAMBDA_ENV_ID=") for e in env)
                and _pid_alive(int(name))):
            found.append(int(name))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LocalStackService:
    """One LocalStack process (or an external endpoint)."""

    def __init__(self, *, port: int | None = None, services: str | None = None,
                 workdir: str | os.PathLike | None = None, startup_timeout: float = 90.0,
                 extra_env: dict[str, str] | None = None, run_setup: bool = True,
                 region: str = DEFAULT_REGION):
        self.port = port
        self.services = services or os.environ.get("VTP_LOCALSTACK_SERVICES") or DEFAULT_SERVICES
        self.startup_timeout = startup_timeout
        self.extra_env = dict(extra_env or {})
        self.run_setup = run_setup
        self.region = region
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.endpoint: str | None = None
        self.external = False
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.session = uuid.uuid4().hex
        self.log_path: Path | None = None
        self.start_seconds: float | None = None

    # ---- lifecycle
    def start(self) -> "LocalStackService":
        ext = external_endpoint()
        if ext:
            self.endpoint, self.external = ext, True
            if health(ext) is None:
                raise LocalStackError(f"the given LocalStack endpoint {ext} does not answer "
                                      "/_localstack/health (unset AWS_ENDPOINT_URL/VTP_LOCALSTACK_ENDPOINT "
                                      "to let the tests start their own)")
            return self
        py = ensure_venv(self.run_setup)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="vtp-localstack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("fs", "tmp"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.port = self.port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "localstack.log"
        env = {k: os.environ[k] for k in HOST_PASSTHROUGH if k in os.environ}
        env.update({
            # this machine has /.dockerenv: without these LocalStack binds
            # 0.0.0.0 and starts a DNS server on port 53
            "OVERRIDE_IN_DOCKER": "0",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_SERVER": "hypercorn",  # the default server ignored the IPv4 host
            "DNS_ADDRESS": "0",
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "FILESYSTEM_ROOT": str(self.workdir / "fs"),
            "TMPDIR": str(self.workdir / "tmp"),
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
            # LocalStack's DynamoDB downloads a JDK + DynamoDB Local from the
            # web on first use; this one is moto (see dynamodb_moto.py)
            "PROVIDER_OVERRIDE_DYNAMODB": DYNAMODB_PROVIDER,
            "SERVICES": self.services,
            "PERSISTENCE": "0",
            "PYTHONUNBUFFERED": "1",
            SESSION_MARKER: self.session,
        })
        env.update(self.extra_env)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(py), "-m", "localstack.runtime.main"],
                env=env, cwd=str(self.workdir), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid = self.proc.pid
        try:
            self._wait_healthy(t0 + self.startup_timeout)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with {self.proc.returncode} during startup; log: {self.log_path}\n"
                    + self.log_tail())
            if health(self.endpoint, timeout=1.0) is not None:
                return
            time.sleep(0.2)
        raise LocalStackError(f"LocalStack did not become healthy in {self.startup_timeout:.0f} s; "
                              f"log: {self.log_path}\n" + self.log_tail())

    def stop(self, timeout: float = 10.0, keep_logs: bool = False) -> None:
        """SIGTERM the process group, wait up to ``timeout``, then SIGKILL; kill
        leftover Lambda children; delete the work dir unless ``keep_logs``
        (the log is then at ``log_path``)."""
        if self.external:
            return
        if self.pid is not None:
            stop_pid(self.pid, timeout)
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            _kill_marked(self.session)
            self.pid = None
        if self._own_workdir and self.workdir and not keep_logs:
            # keep only the log: copy it next to the state dir would be noise; drop all
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalStackService":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(keep_logs=exc_type is not None)

    # ---- helpers
    def log_tail(self, n: int = 60) -> str:
        try:
            return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])
        except (OSError, TypeError):
            return ""

    def health(self) -> dict | None:
        return health(self.endpoint) if self.endpoint else None

    def lambda_pids(self, function_name: str | None = None) -> list[int]:
        """PIDs of the Lambda processes this LocalStack started (all, or one
        function's), found by the marker variables in /proc/PID/environ.
        Empty for an external endpoint."""
        if self.external:
            return []
        return lambda_processes(self.session, function_name)

    def client_kwargs(self) -> dict:
        return {"endpoint_url": self.endpoint, "region_name": self.region,
                "aws_access_key_id": "test", "aws_secret_access_key": "test"}

    def client(self, service: str, **kwargs):
        import boto3  # the project's venv has it (extra "aws")

        return boto3.client(service, **{**self.client_kwargs(), **kwargs})

    def aws_env(self) -> dict[str, str]:
        """Variables that point the AWS CLI, boto3 and cdklocal at this LocalStack."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}


def stop_pid(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM the group led by ``pid``, wait up to ``timeout``, then SIGKILL.
    True if it had to be killed."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True
    try:  # stragglers of the group (e.g. a DynamoDB Local JVM)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


# --------------------------------------------------------------------------
# CLI


def _cli_start(args) -> int:
    if PID_FILE.exists():
        state = json.loads(PID_FILE.read_text())
        if _pid_alive(state["pid"]) and health(state["endpoint"]):
            print(state["endpoint"])
            return 0
        PID_FILE.unlink()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    workdir = STATE_DIR / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    svc = LocalStackService(port=args.port, workdir=workdir)
    if svc.external or external_endpoint():
        print(f"an endpoint is given by the environment ({external_endpoint()}); not starting one",
              file=sys.stderr)
        return 1
    svc.start()
    PID_FILE.write_text(json.dumps({"pid": svc.pid, "endpoint": svc.endpoint, "session": svc.session,
                                    "log": str(svc.log_path), "workdir": str(workdir)}))
    print(svc.endpoint)
    print(f"started pid {svc.pid} in {svc.start_seconds:.1f} s; log {svc.log_path}\n"
          f"use: export AWS_ENDPOINT_URL={svc.endpoint} AWS_ENDPOINT_URL_S3={svc.endpoint} "
          f"AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION={DEFAULT_REGION}",
          file=sys.stderr)
    return 0


def _cli_stop(args) -> int:
    if not PID_FILE.exists():
        print("not running (no pid file)", file=sys.stderr)
        return 0
    state = json.loads(PID_FILE.read_text())
    killed = stop_pid(state["pid"], timeout=args.timeout)
    leftovers = _kill_marked(state["session"])
    PID_FILE.unlink()
    print(f"stopped pid {state['pid']}" + (" (SIGKILL after timeout)" if killed else "")
          + (f"; killed {len(leftovers)} leftover Lambda processes" if leftovers else ""),
          file=sys.stderr)
    return 0


def _cli_status(args) -> int:
    if not PID_FILE.exists():
        print("not running")
        return 3
    state = json.loads(PID_FILE.read_text())
    h = health(state["endpoint"]) if _pid_alive(state["pid"]) else None
    print(json.dumps({**state, "alive": h is not None, "health": h}, indent=2))
    return 0 if h is not None else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Start/stop LocalStack on 127.0.0.1 for vtp's tests.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start in the background, print the endpoint")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p = sub.add_parser("stop", help="stop the one `start` started (by its pid)")
    p.add_argument("--timeout", type=float, default=10.0)
    sub.add_parser("status", help="print pid, endpoint and health")
    args = ap.parse_args(argv)
    try:
        return {"start": _cli_start, "stop": _cli_stop, "status": _cli_status}[args.cmd](args)
    except LocalStackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
