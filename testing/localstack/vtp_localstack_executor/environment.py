"""The environment of a local Lambda execution environment (stdlib only).

In a Lambda container the code is at /var/task, the layers are merged at
/opt and the runtime lives in /var/runtime. Here they are host directories,
so paths in environment values are rewritten (``rewrite_value``):

* a value that is ``/opt`` or starts with ``/opt/`` -> the merged layer dir
  (an empty dir when the function has no layer, never the host's /opt);
* ``/var/task[/...]`` -> the unzipped code dir; ``/var/runtime[/...]`` -> an
  empty per-environment dir;
* in variables whose name ends in ``PATH`` (PATH, PYTHONPATH,
  LD_LIBRARY_PATH, ...) each ``:``-separated entry is rewritten the same way;
* nothing else is touched (``/tmp`` stays the host's /tmp; ``TMPDIR`` points
  to a per-environment dir that is deleted with the environment).

So a function with ``VTP_FFMPEG_DIR=/opt/bin`` and a layer holding
``bin/ffmpeg`` sees ``VTP_FFMPEG_DIR=<layer dir>/bin`` and finds ffmpeg.
"""

from __future__ import annotations

import os

# Variables taken from the host environment; everything else comes from
# LocalStack (which already merged the function's own variables last).
HOST_PASSTHROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "SSL_CERT_FILE", "SSL_CERT_DIR")
CONTROL_PREFIX = "_VTP_EXEC_"
SESSION_MARKER = "VTP_LOCALSTACK_SESSION"
ENV_ID_MARKER = "VTP_LAMBDA_ENV_ID"


def _rewrite_path(value: str, mapping: dict[str, str]) -> str:
    for prefix, target in mapping.items():
        if value == prefix:
            return target
        if value.startswith(prefix + "/"):
            return target + value[len(prefix):]
    return value


def rewrite_value(key: str, value: str, mapping: dict[str, str]) -> str:
    """Rewrites container paths in one environment value (see the module doc)."""
    if key.endswith("PATH") and ":" in value:
        return ":".join(_rewrite_path(part, mapping) for part in value.split(":"))
    return _rewrite_path(value, mapping)


def build_env(
    localstack_env: dict[str, object],
    *,
    code_dir: str,
    opt_dir: str,
    runtime_dir: str,
    env_dir: str,
    python: str,
    python_version: tuple[int, int],
    host_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment: LocalStack's variables (AWS_*, LOCALSTACK_*,
    _HANDLER, the function's own variables) with container paths rewritten,
    plus PATH/PYTHONPATH/LD_LIBRARY_PATH laid out like the Lambda runtime's."""
    host_env = dict(os.environ if host_env is None else host_env)
    mapping = {"/opt": opt_dir, "/var/task": code_dir, "/var/runtime": runtime_dir}
    env: dict[str, str] = {k: host_env[k] for k in HOST_PASSTHROUGH if k in host_env}
    for key, value in localstack_env.items():
        if value is None:
            continue
        env[str(key)] = rewrite_value(str(key), str(value), mapping)

    # Credentials: LocalStack gives the function role's assumed-role keys; only
    # if they are missing fall back to LocalStack's usual test/test.
    env.setdefault("AWS_ACCESS_KEY_ID", "test")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    if "AWS_REGION" in env:
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    # Keep the host's ~/.aws out of the handler's boto3.
    home = os.path.join(env_dir, "home")
    env["HOME"] = home
    env.setdefault("AWS_CONFIG_FILE", os.path.join(home, ".aws", "config"))
    env.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.path.join(home, ".aws", "credentials"))
    env["TMPDIR"] = os.path.join(env_dir, "tmp")
    env["LAMBDA_TASK_ROOT"] = code_dir
    env["LAMBDA_RUNTIME_DIR"] = runtime_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    no_proxy = env.get("NO_PROXY", "")
    env["NO_PROXY"] = ",".join(p for p in (no_proxy, "127.0.0.1,localhost") if p)

    # Lambda: PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin
    py_bin = os.path.dirname(python)
    host_path = host_env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    user_path = env.get("PATH")
    parts = [py_bin] + ([user_path] if user_path else []) + [host_path, os.path.join(opt_dir, "bin")]
    env["PATH"] = ":".join(dict.fromkeys(p for p in ":".join(parts).split(":") if p))
    # Lambda: LD_LIBRARY_PATH=...:/var/task:/var/task/lib:/opt/lib
    ld = [env.get("LD_LIBRARY_PATH", ""), code_dir, os.path.join(code_dir, "lib"), os.path.join(opt_dir, "lib")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in ld if p)
    # Lambda's sys.path: /var/task, /opt/python/lib/pythonX.Y/site-packages, /opt/python, ...
    x, y = python_version
    pp = [code_dir,
          os.path.join(opt_dir, "python", "lib", f"python{x}.{y}", "site-packages"),
          os.path.join(opt_dir, "python"),
          env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = ":".join(p for p in pp if p)
    return env
