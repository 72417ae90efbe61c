"""LocalStack side of the vtp-local-process executor (runs inside LocalStack).

One execution environment = one process group, started by ``start()``:
``python bootstrap.py init`` (see bootstrap.py) plus the worker it spawns,
plus whatever the handler spawns (ffmpeg). ``stop()`` SIGKILLs the group and
any process still carrying the environment's marker variable; an ``atexit``
hook does the same for every environment when LocalStack exits, and the
children have PR_SET_PDEATHSIG for the case where LocalStack is killed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from . import EXECUTOR_NAME
from .environment import CONTROL_PREFIX, ENV_ID_MARKER, SESSION_MARKER, build_env
from .interpreters import find_interpreter, interpreter_version, runtime_version

LOG = logging.getLogger(__name__)
BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
# Marker put into every child's environment; service.py scans for it after
# LocalStack stopped. Defaults to LocalStack's own PID.
SESSION = os.environ.get(SESSION_MARKER) or str(os.getpid())
ENFORCE_MEMORY = os.environ.get("VTP_LAMBDA_ENFORCE_MEMORY", "0") == "1"

_LIVE: dict[str, "LocalProcessRuntimeExecutor"] = {}
_LIVE_LOCK = threading.Lock()


class _Spawner:
    """Starts children from one long-lived thread: PR_SET_PDEATHSIG fires when
    the *thread* that forked the child exits, and LocalStack starts
    environments from short-lived worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list = []
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._requests:
                    self._cond.wait()
                args, kwargs, fut = self._requests.pop(0)
            try:
                fut.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        fut: Future = Future()
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vtp-lambda-spawner", daemon=True)
                self._thread.start()
            self._requests.append((args, kwargs, fut))
            self._cond.notify()
        return fut.result()


_SPAWNER = _Spawner()


def _procs_with_env(marker: str, value: str) -> list[int]:
    """PIDs whose environment has ``marker=value`` (Linux /proc)."""
    needle = f"{marker}={value}".encode()
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def _opt_dir_for(function_version: FunctionVersion) -> Path | None:
    """The directory that plays /opt: the layer's unzipped dir for one layer,
    a merged copy (hard links where possible) for several; None without layers."""
    layers = [lv for lv in (function_version.config.layers or []) if lv.code]
    if not layers:
        return None
    if len(layers) == 1:
        return Path(layers[0].code.get_unzipped_code_location())
    key = hashlib.sha256("|".join(lv.layer_version_arn for lv in layers).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "lambda" / "vtp-opt" / key


def _merge_layers(function_version: FunctionVersion, target: Path) -> None:
    if target.exists():
        return
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".merge-"))
    for lv in function_version.config.layers:  # later layers win, as in /opt
        src = Path(lv.code.get_unzipped_code_location())
        shutil.copytree(src, tmp, dirs_exist_ok=True, copy_function=_link_or_copy, symlinks=True)
    try:
        tmp.rename(target)
    except OSError:  # another thread merged it first
        shutil.rmtree(tmp, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        if os.path.lexists(dst):
            os.unlink(dst)
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    """Runs a Python function's execution environment as local processes."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address="127.0.0.1", container_port=None)
        self.proc: subprocess.Popen | None = None
        self.env_dir: str | None = None
        self._stopped = threading.Event()

    # ---- lifecycle
    def start(self, env_vars: dict[str, str]) -> None:
        fv = self.function_version
        self.executor_endpoint.start()
        python = self._interpreter()
        code_dir = str(fv.config.code.get_unzipped_code_location())
        base = Path(tempfile.gettempdir()) / "lambda" / "vtp-envs"
        base.mkdir(parents=True, exist_ok=True)
        self.env_dir = tempfile.mkdtemp(prefix=f"{fv.id.function_name[:40]}-{self.id[:8]}-", dir=base)
        for sub in ("tmp", "home", "runtime", "opt"):
            os.makedirs(os.path.join(self.env_dir, sub), exist_ok=True)
        opt = _opt_dir_for(fv)
        env = build_env(
            env_vars,
            code_dir=code_dir,
            opt_dir=str(opt) if opt else os.path.join(self.env_dir, "opt"),
            runtime_dir=os.path.join(self.env_dir, "runtime"),
            env_dir=self.env_dir,
            python=python,
            python_version=interpreter_version(python) or runtime_version(fv.config.runtime),
        )
        env[SESSION_MARKER] = SESSION
        env[ENV_ID_MARKER] = self.id
        port_file = os.path.join(self.env_dir, "port")
        env[CONTROL_PREFIX + "PARENT_PID"] = str(os.getpid())
        env[CONTROL_PREFIX + "PORT_FILE"] = port_file
        env[CONTROL_PREFIX + "ENFORCE_MEMORY"] = "1" if ENFORCE_MEMORY else "0"
        log_path = os.path.join(self.env_dir, "init.log")
        with open(log_path, "ab") as log:
            # -E -s: the init itself ignores PYTHONPATH/user site (the worker does not)
            self.proc = _SPAWNER.popen(
                [python, "-E", "-s", BOOTSTRAP, "init"],
                env=env, cwd=code_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True,
            )
        with _LIVE_LOCK:
            _LIVE[self.id] = self
        LOG.debug("vtp-local-process: env %s of %s is pid %s (%s)", self.id, fv.qualified_arn, self.proc.pid, python)
        threading.Thread(target=self._watch, name=f"vtp-lambda-watch-{self.id[:8]}", daemon=True).start()
        self.executor_endpoint.wait_for_startup()
        with open(port_file) as f:
            self.executor_endpoint.container_port = int(f.read().strip())

    def _interpreter(self) -> str:
        python = find_interpreter(str(self.function_version.config.runtime))
        if not python:
            raise LambdaRuntimeException(
                f"{EXECUTOR_NAME}: no interpreter for runtime {self.function_version.config.runtime}"
                " (set VTP_LAMBDA_PYTHON)")
        return python

    def _watch(self) -> None:
        """Turns an unexpected exit of the init into a startup error or an invocation error."""
        proc = self.proc
        rc = proc.wait()
        if self._stopped.is_set():
            return
        tail = self.get_logs()[-2000:]
        message = f"{EXECUTOR_NAME}: runtime init exited with {rc}: {tail}"
        LOG.warning(message)
        payload = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
        fut = self.executor_endpoint.startup_future
        if fut is not None and not fut.done():
            try:
                fut.set_exception(StatusErrorException("Environment startup failed", payload=payload))
            except Exception:  # noqa: BLE001 - lost a race with status_ready
                pass
        inv = self.executor_endpoint.invocation_future
        if inv is not None and not inv.done():
            try:
                inv.set_result(InvocationResult("", payload, is_error=True, logs=message))
            except Exception:  # noqa: BLE001
                pass

    def stop(self) -> None:
        self._stopped.set()
        self._kill()
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:  # noqa: BLE001
            LOG.debug("vtp-local-process: endpoint shutdown of %s: %s", self.id, e)
        with _LIVE_LOCK:
            _LIVE.pop(self.id, None)
        if self.env_dir and os.environ.get("VTP_LAMBDA_KEEP_ENV_DIRS") != "1":
            shutil.rmtree(self.env_dir, ignore_errors=True)

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                LOG.warning("vtp-local-process: pid %s did not die", proc.pid)
        # anything that left the group (setsid) but still carries our marker
        for pid in _procs_with_env(ENV_ID_MARKER, self.id):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # ---- addresses
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}{self.executor_endpoint.get_endpoint_prefix()}"

    # ---- invocations
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        if not self.env_dir:
            return ""
        try:
            with open(os.path.join(self.env_dir, "init.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ---- versions
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip:
            raise LambdaRuntimeException(f"{EXECUTOR_NAME} runs zip packages only, not {cfg.package_type}")
        if runtime_version(cfg.runtime) is None:
            raise LambdaRuntimeException(f"{EXECUTOR_NAME} runs Python runtimes only, not {cfg.runtime}")
        if not find_interpreter(str(cfg.runtime)):
            raise LambdaRuntimeException(f"{EXECUTOR_NAME}: no interpreter for {cfg.runtime} (set VTP_LAMBDA_PYTHON)")
        if cfg.code:
            cfg.code.prepare_for_execution()
        for lv in cfg.layers or []:
            if lv.code:
                lv.code.prepare_for_execution()
        opt = _opt_dir_for(function_version)
        if opt is not None and len(cfg.layers) > 1:
            opt.parent.mkdir(parents=True, exist_ok=True)
            _merge_layers(function_version, opt)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        LOG.info("%s Lambda executor: handlers run as local processes", EXECUTOR_NAME)
        return True


@atexit.register
def _kill_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for ex in live:
        ex._stopped.set()
        try:
            ex._kill()
        except Exception:  # noqa: BLE001
            pass
