"""Child side of the vtp-local-process executor (standard library only).

Runs under the function's interpreter, as two processes per execution
environment, both in the process group the executor created:

``init`` (the equivalent of LocalStack's Go "runtime init")
    Serves ``POST /invoke`` on 127.0.0.1:<free port> (written to a file for
    the executor), tells LocalStack it is ready
    (``POST $LOCALSTACK_RUNTIME_ENDPOINT/status/<id>/ready``), hands each
    invocation to the worker, enforces the timeout (kills the worker and its
    descendants, reports ``Sandbox.Timedout``), collects the worker's
    stdout/stderr and posts them as the invocation's logs
    (``.../invocations/<id>/logs``, then ``.../response`` or ``.../error``).
    A worker that died (timeout, crash, ``sys.exit``) is started afresh on the
    next invocation, as Lambda re-initialises a sandbox.

``worker`` (the equivalent of the Python runtime)
    Imports the handler once, then runs invocations it reads as JSON lines
    from a pipe and writes results back; its stdout/stderr go to a pipe the
    init reads.

Both set PR_SET_PDEATHSIG (Linux) so that they die with their parent, and
the init also polls its parent: nothing outlives LocalStack.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import decimal
import importlib
import json
import math
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL_PREFIX = "_VTP_EXEC_"
LOG_MARK = b"\x1eVTP-INVOKE-END "
MAX_LOG_BYTES = 4 * 1024 * 1024
PR_SET_PDEATHSIG = 1


def set_pdeathsig(expected_parent: int | None) -> None:
    """Die (SIGKILL) when the parent goes; exit at once if it is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(70)


def _say(msg: str) -> None:
    sys.stderr.write(f"[vtp-init {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# process tree helpers (Linux /proc)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def tree_rss_bytes(pid: int) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (found before the kill)."""
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


# --------------------------------------------------------------------------
# init


class Worker:
    """One worker process with its control pipes and its log pipe."""

    def __init__(self, script: str, env: dict[str, str], cwd: str):
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        log_r, log_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, script, "worker", str(req_r), str(res_w), str(os.getpid())],
            env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_w, stderr=log_w,
            pass_fds=(req_r, res_w), close_fds=True,
        )
        for fd in (req_r, res_w, log_w):
            os.close(fd)
        self.req = os.fdopen(req_w, "wb", buffering=0)
        self.res_fd = res_r
        self._res_buf = b""
        self.log_fd = log_r
        self.log = bytearray()
        self.log_cond = threading.Condition()
        self.log_eof = False
        self.ready = False
        self.spawned = time.monotonic()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self) -> None:
        while True:
            try:
                chunk = os.read(self.log_fd, 65536)
            except OSError:
                chunk = b""
            with self.log_cond:
                if not chunk:
                    self.log_eof = True
                    self.log_cond.notify_all()
                    os.close(self.log_fd)
                    return
                self.log += chunk
                if len(self.log) > MAX_LOG_BYTES:
                    del self.log[: len(self.log) - MAX_LOG_BYTES]
                self.log_cond.notify_all()

    def take_logs(self, request_id: str | None, wait: float) -> str:
        """Logs up to the end mark of ``request_id`` (waiting for it), or all so far."""
        mark = LOG_MARK + request_id.encode() + b"\n" if request_id else None
        deadline = time.monotonic() + wait
        with self.log_cond:
            while mark is not None and mark not in self.log and not self.log_eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.log_cond.wait(left)
            if mark is not None and mark in self.log:
                i = self.log.index(mark)
                out = bytes(self.log[:i])
                del self.log[: i + len(mark)]
            else:
                out = bytes(self.log)
                self.log.clear()
        return out.decode("utf-8", "replace")

    def send(self, msg: dict) -> None:
        self.req.write(json.dumps(msg).encode() + b"\n")

    def recv(self, deadline: float, poll=None) -> dict | None:
        """Next message; None on deadline; EOFError when the worker closed the pipe."""
        while b"\n" not in self._res_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.res_fd], [], [], min(left, 0.2))
            if poll is not None:
                poll()
            if not r:
                continue
            chunk = os.read(self.res_fd, 1 << 20)
            if not chunk:
                raise EOFError
            self._res_buf += chunk
        line, self._res_buf = self._res_buf.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.req,):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.close(self.res_fd)
        except OSError:
            pass

    def exit_description(self) -> str:
        try:
            rc = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "Runtime exited without providing a reason"
        if rc < 0:
            try:
                return f"Runtime exited with error: signal: {signal.Signals(-rc).name[3:].lower()}"
            except ValueError:
                return f"Runtime exited with error: signal {-rc}"
        return f"Runtime exited with error: exit status {rc}"


class Init:
    def __init__(self) -> None:
        env = os.environ
        self.parent = int(env[CONTROL_PREFIX + "PARENT_PID"])
        self.port_file = env[CONTROL_PREFIX + "PORT_FILE"]
        self.enforce_memory = env.get(CONTROL_PREFIX + "ENFORCE_MEMORY", "0") == "1"
        self.endpoint = env["LOCALSTACK_RUNTIME_ENDPOINT"].rstrip("/")
        self.runtime_id = env["LOCALSTACK_RUNTIME_ID"]
        self.timeout = float(env.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
        self.memory_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128)
        self.version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.worker_env = {k: v for k, v in env.items() if not k.startswith(CONTROL_PREFIX)}
        self.cwd = env.get("LAMBDA_TASK_ROOT") or os.getcwd()
        self.script = os.path.abspath(__file__)
        self.queue: queue.Queue = queue.Queue()
        self.worker: Worker | None = None
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- LocalStack calls
    def post(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(self.endpoint + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        for attempt in range(5):
            try:
                with self.opener.open(req, timeout=30) as resp:
                    resp.read()
                return
            except OSError as e:  # URLError is an OSError
                if attempt == 4:
                    _say(f"POST {path} failed: {e}")
                    return
                time.sleep(0.1 * (attempt + 1))

    def serve(self) -> None:
        init = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/invoke":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                init.queue.put(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, fmt, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        port = server.server_address[1]
        tmp = self.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, self.port_file)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _say(f"listening on 127.0.0.1:{port}")

    def watch_parent(self) -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != self.parent:
                _say("parent gone; exiting")
                self.shutdown()

    def shutdown(self, *_args) -> None:
        if self.worker is not None:
            kill_tree(self.worker.proc.pid)
        os._exit(0)

    def new_worker(self) -> Worker:
        # spawned from the main thread: PR_SET_PDEATHSIG follows the thread that forks
        return Worker(self.script, self.worker_env, self.cwd)

    def run(self) -> None:
        set_pdeathsig(self.parent)
        signal.signal(signal.SIGTERM, self.shutdown)
        self.serve()
        threading.Thread(target=self.watch_parent, daemon=True).start()
        self.worker = self.new_worker()  # start importing the handler now
        self.post(f"/status/{self.runtime_id}/ready", b"{}")
        while True:
            self.invoke(self.queue.get())

    # -- one invocation
    def invoke(self, req: dict) -> None:
        rid = req.get("invoke-id") or req.get("request-id") or "unknown"
        started = time.monotonic()
        deadline = started + self.timeout
        if self.worker is None or self.worker.proc.poll() is not None:
            if self.worker is not None:
                self.worker.kill()
            self.worker = self.new_worker()
        w = self.worker
        pre_logs = ""
        result: dict | None = None
        error: dict | None = None
        status = ""
        oom = []
        init_ms = None

        def poll() -> None:
            if self.enforce_memory and tree_rss_bytes(w.proc.pid) > self.memory_mb * 1024 * 1024:
                oom.append(True)
                kill_tree(w.proc.pid)

        try:
            if not w.ready:
                # init phase: not counted in the function timeout (Lambda gives it 10 s)
                msg = w.recv(time.monotonic() + max(10.0, self.timeout), poll)
                if msg is None:
                    raise TimeoutError
                pre_logs = w.take_logs(None, 0)
                if msg.get("type") == "init_error":
                    error = msg["error"]
                    status = "error"
                    w.kill()
                    self.worker = None
                else:
                    w.ready = True
                init_ms = (time.monotonic() - w.spawned) * 1000
                started = time.monotonic()
                deadline = started + self.timeout
            if error is None:
                w.send({
                    "id": rid,
                    "payload": req.get("payload", ""),
                    "arn": req.get("invoked-function-arn", ""),
                    "trace_id": req.get("trace-id", ""),
                    "deadline_ms": int((time.time() + (deadline - time.monotonic())) * 1000),
                })
                msg = w.recv(deadline, poll)
                if msg is None:
                    raise TimeoutError
                result = msg
        except TimeoutError:
            status = "timeout"
        except (EOFError, BrokenPipeError, OSError):
            status = "exit"

        duration_ms = (time.monotonic() - started) * 1000
        if status == "timeout":
            w.kill()
            self.worker = None
            logs = w.take_logs(None, 0.5)
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            message = f"{stamp} {rid} Task timed out after {self.timeout:.2f} seconds"
            logs += message + "\n"
            error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            max_mem = 0
        elif status == "exit":
            description = ("Runtime exited with error: signal: killed (memory limit "
                           f"{self.memory_mb} MB exceeded)" if oom else w.exit_description())
            w.kill()
            self.worker = None
            logs = w.take_logs(None, 0.5)
            error = {"errorType": "Runtime.OutOfMemory" if oom else "Runtime.ExitError",
                     "errorMessage": f"RequestId: {rid} Error: {description}"}
            logs += f"RequestId: {rid} Error: {description}\n"
            max_mem = 0
        elif status == "error":  # init error
            logs = w.take_logs(None, 0.5)
            max_mem = 0
        else:
            logs = w.take_logs(rid, 2.0)
            max_mem = int(result.get("max_rss_kb", 0)) // 1024
            if not result.get("ok"):
                error = result["error"]

        billed = int(math.ceil(duration_ms))
        report = (f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\t"
                  f"Billed Duration: {billed} ms\tMemory Size: {self.memory_mb} MB\t"
                  f"Max Memory Used: {max_mem} MB\t")
        if init_ms is not None:
            report += f"Init Duration: {init_ms:.2f} ms\t"
        if status == "timeout":
            report += "Status: timeout"
        text = (pre_logs + f"START RequestId: {rid} Version: {self.version}\n" + logs
                + ("" if not logs or logs.endswith("\n") else "\n")
                + f"END RequestId: {rid}\n" + report + "\n")
        self.post(f"/invocations/{rid}/logs", json.dumps({"logs": text}).encode())
        if error is not None:
            self.post(f"/invocations/{rid}/error", json.dumps(error).encode())
        else:
            self.post(f"/invocations/{rid}/response", result["body"].encode())


# --------------------------------------------------------------------------
# worker


class LambdaContext:
    def __init__(self, request_id: str, arn: str, deadline_ms: int):
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _RequestIdFilter:
    request_id = ""

    def filter(self, record) -> bool:
        record.aws_request_id = self.request_id
        return True


def _error(exc: BaseException, error_type: str | None = None, skip_frames: int = 0) -> dict:
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(tb)),
    }


def _log_error(err: dict) -> None:
    # what the Lambda Python runtime writes for an unhandled error
    text = f"[ERROR] {err['errorType']}: {err['errorMessage']}\n"
    if err["stackTrace"]:
        text += "Traceback (most recent call last):\n" + "".join(err["stackTrace"])
    sys.stderr.write(text)
    sys.stderr.flush()


def _json_default(o):
    if isinstance(o, decimal.Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    if isinstance(o, (_dt.datetime, _dt.date)):
        return o.isoformat()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def load_handler(spec: str):
    module_name, _, func_name = spec.rpartition(".")
    module_name = module_name.replace("/", ".")
    if not module_name:
        raise _InitError({"errorType": "Runtime.MalformedHandlerName",
                          "errorMessage": f"Bad handler '{spec}': not enough values to unpack",
                          "requestId": "", "stackTrace": []})
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise _InitError({"errorType": "Runtime.ImportModuleError",
                          "errorMessage": f"Unable to import module '{module_name}': {e}",
                          "requestId": "", "stackTrace": []}) from e
    except SyntaxError as e:
        raise _InitError({"errorType": "Runtime.UserCodeSyntaxError",
                          "errorMessage": f"Syntax error in module '{module_name}': {e}",
                          "requestId": "", "stackTrace": []}) from e
    except Exception as e:  # noqa: BLE001 - an exception at import time
        raise _InitError(_error(e, skip_frames=1)) from e
    func = getattr(module, func_name, None)
    if func is None:
        raise _InitError({"errorType": "Runtime.HandlerNotFound",
                          "errorMessage": f"Handler '{func_name}' missing on module '{module_name}'",
                          "requestId": "", "stackTrace": []})
    return func


class _InitError(Exception):
    def __init__(self, error: dict):
        super().__init__(error["errorMessage"])
        self.error = error


def worker_main(req_fd: int, res_fd: int, parent: int) -> None:
    set_pdeathsig(parent)
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path.pop(0)  # Lambda's sys.path starts with the task root, not the runtime's dir
    requests = os.fdopen(req_fd, "rb")
    results = os.fdopen(res_fd, "wb", buffering=0)

    def send(msg: dict) -> None:
        results.write(json.dumps(msg).encode() + b"\n")

    import logging

    rid_filter = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    handler.addFilter(rid_filter)
    logging.getLogger().addHandler(handler)
    if os.environ.get("AWS_LAMBDA_LOG_LEVEL"):
        logging.getLogger().setLevel(os.environ["AWS_LAMBDA_LOG_LEVEL"].upper())

    try:
        func = load_handler(os.environ.get("_HANDLER", ""))
    except _InitError as e:
        _log_error(e.error)
        send({"type": "init_error", "error": e.error})
        return
    send({"type": "ready"})

    for line in requests:
        msg = json.loads(line)
        rid = msg["id"]
        rid_filter.request_id = rid
        os.environ["_X_AMZN_TRACE_ID"] = msg.get("trace_id") or ""
        out: dict
        try:
            raw = msg.get("payload") or ""
            event = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            out = {"ok": False, "error": {"errorType": "Runtime.UnmarshalError",
                                          "errorMessage": f"Unable to unmarshal input: {e}",
                                          "requestId": rid, "stackTrace": []}}
        else:
            ctx = LambdaContext(rid, msg.get("arn", ""), int(msg["deadline_ms"]))
            try:
                value = func(event, ctx)
            except Exception as e:  # noqa: BLE001 - reported to the caller like Lambda does
                err = _error(e, skip_frames=1)
                err["requestId"] = rid
                _log_error(err)
                out = {"ok": False, "error": err}
            else:
                try:
                    out = {"ok": True, "body": json.dumps(value, default=_json_default)}
                except (TypeError, ValueError) as e:
                    err = {"errorType": "Runtime.MarshalError",
                           "errorMessage": f"Unable to marshal response: {e}",
                           "requestId": rid, "stackTrace": []}
                    _log_error(err)
                    out = {"ok": False, "error": err}
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, LOG_MARK + rid.encode() + b"\n")
        out["max_rss_kb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        send(out)


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[1] == "worker":
        worker_main(int(argv[2]), int(argv[3]), int(argv[4]))
    elif len(argv) >= 2 and argv[1] == "init":
        Init().run()
    else:
        sys.exit("usage: bootstrap.py init|worker ...")


if __name__ == "__main__":
    main(sys.argv)
