"""The package as `pip` builds and installs it: `pip wheel .` makes a wheel that carries the
worker program, the extension, the typing marker and stubs and the `shmaccel-pool` command;
installed into a fresh virtual environment (no source tree, no PYTHONPATH, no SHMACCEL_WORKER)
it computes right, `python -m shmaccel` names its version, worker and pools, and the version
is the one of include/shmaccel.h everywhere.

The wheel is built from a copy of the tracked files, offline (--no-build-isolation, with this
Python's setuptools), so the test needs no network and leaves no build files in the tree."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import shmaccel

from conftest import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs a C compiler")


def header_version() -> str:
    text = (ROOT / "include" / "shmaccel.h").read_text()
    match = re.search(r'^#define SA_VERSION_STRING "([^"]+)"', text, re.M)
    assert match, "include/shmaccel.h defines no SA_VERSION_STRING"
    return match.group(1)


def source_copy(dest: Path) -> Path:
    """The files a release would hold: git's tracked files when this is a checkout, else the
    tree without build output."""
    try:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                 check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            "build*", ".git", "*.so", "shmaccel-worker", "__pycache__", "*.egg-info"))
        return dest
    for name in filter(None, tracked):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """No way back to the source tree: the installed package must stand alone."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SHMACCEL_WORKER", "SHMACCEL_POOL")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = source_copy(base / "src")
    out = base / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(src)],
        capture_output=True, text=True, env=clean_env(), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = list(out.glob("shmaccel-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    result = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, env=clean_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return env_dir


def test_wheel_carries_worker_extension_stubs_and_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        worker = zf.getinfo("shmaccel/shmaccel-worker")
        assert (worker.external_attr >> 16) & stat.S_IXUSR, "the worker must stay executable"
        assert any(re.fullmatch(r"shmaccel/_shmaccel\..*\.so", n) for n in names), names
        assert {"shmaccel/py.typed", "shmaccel/__init__.pyi", "shmaccel/__main__.py"} <= names
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert f"Version: {header_version()}" in metadata
    for extra in ("numpy", "test"):
        assert f"Provides-Extra: {extra}" in metadata
    assert re.search(r"^shmaccel-pool\s*=\s*shmaccel\._cli:main", entry_points, re.M)


def test_installed_package_computes_and_describes_itself(venv: Path, tmp_path: Path) -> None:
    python = str(venv / "bin" / "python")
    code = ("import shmaccel\n"
            "for value in (shmaccel.square([1, 2, 3]), shmaccel.double([1.5]), "
            "shmaccel.__version__, shmaccel.worker_path(), shmaccel.__file__):\n"
            "    print(value)\n")
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=clean_env(), timeout=60)
    assert run.returncode == 0, run.stderr
    squares, doubled, version, worker, package = run.stdout.splitlines()
    assert (squares, doubled) == ("[1, 4, 9]", "[3.0]")
    assert version == header_version() == shmaccel.__version__
    assert worker.startswith(str(venv)) and package.startswith(str(venv)), run.stdout

    about = subprocess.run([python, "-m", "shmaccel"], capture_output=True, text=True,
                           cwd=tmp_path, env=clean_env(), timeout=60)
    assert about.returncode == 0, about.stderr
    assert f"shmaccel {header_version()}" in about.stdout
    assert f"worker:  {worker}" in about.stdout
    assert "pools:" in about.stdout

    listing = subprocess.run([str(venv / "bin" / "shmaccel-pool"), "list"], capture_output=True,
                             text=True, cwd=tmp_path, env=clean_env(), timeout=60)
    assert listing.returncode == 0, listing.stderr


def test_python_m_shmaccel_fails_clearly_without_a_worker(venv: Path, tmp_path: Path) -> None:
    about = subprocess.run([str(venv / "bin" / "python"), "-m", "shmaccel"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env=clean_env(SHMACCEL_WORKER=str(tmp_path / "missing")), timeout=60)
    assert about.returncode == 1
    assert "worker:  not found" in about.stdout and "SHMACCEL_WORKER" in about.stdout
