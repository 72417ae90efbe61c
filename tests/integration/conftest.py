"""Fixtures for the integration tests against LocalStack.

``localstack`` (session scope) starts LocalStack on 127.0.0.1:<free port>
with the vtp-local-process Lambda executor (testing/localstack/), or uses the
endpoint given by ``VTP_LOCALSTACK_ENDPOINT``/``AWS_ENDPOINT_URL``. It yields
a ``LocalStackService``: ``.endpoint``, ``.client("s3")``, ``.aws_env()``,
``.lambda_pids(fn)``, ``.log_path``.

It runs ``testing/localstack/setup.sh`` first (a no-op in well under a second
once the venv is current; about 1-2 minutes the first time on a fresh clone);
``VTP_LOCALSTACK_NO_SETUP=1`` skips that and fails with a clear message if the
venv is missing. On a failed session the LocalStack work dir (log included)
is kept and its path printed; ``VTP_LOCALSTACK_KEEP=1`` always keeps it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICE_PY = REPO / "testing" / "localstack" / "service.py"


def _service_module():
    name = "vtp_testing_localstack_service"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SERVICE_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def localstack_service_module():
    """testing/localstack/service.py, loaded by path (it is not a package of the project)."""
    return _service_module()


@pytest.fixture(scope="session")
def localstack(request, localstack_service_module):
    mod = localstack_service_module
    svc = mod.LocalStackService(run_setup=os.environ.get("VTP_LOCALSTACK_NO_SETUP") != "1")
    try:
        svc.start()
    except mod.LocalStackError as e:
        pytest.fail(f"LocalStack could not be started: {e}", pytrace=False)
    yield svc
    failed = request.session.testsfailed > 0
    keep = failed or os.environ.get("VTP_LOCALSTACK_KEEP") == "1"
    svc.stop(keep_logs=keep)
    if keep and svc.log_path is not None:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"LocalStack work dir kept: {svc.workdir} (log: {svc.log_path})")
