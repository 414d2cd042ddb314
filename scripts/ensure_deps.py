#!/usr/bin/env python3
"""Check, and install with pip when missing, what the tests need (--bench: the benchmarks,
--lint: the Python linters). Exits 0 when everything is there, 1 with the exact command to run
otherwise."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

# Keep these in step with the extras in pyproject.toml (test, bench, lint).
TEST_REQUIRED = {
    "pytest": "pytest>=7",
    "numpy": "numpy",
    "mypy": "mypy",
    "dask": "dask[array,distributed]",
    "distributed": "dask[array,distributed]",
    "tqdm": "tqdm",
}
BENCH_REQUIRED = {"numpy": "numpy"}
BENCH_OPTIONAL = {"numexpr": "numexpr", "matplotlib": "matplotlib", "tqdm": "tqdm"}
LINT_REQUIRED = {"ruff": "ruff", "mypy": "mypy"}


def missing(modules: dict[str, str]) -> list[str]:
    specs = [spec for mod, spec in modules.items() if importlib.util.find_spec(mod) is None]
    return list(dict.fromkeys(specs))


def pip_install(specs: list[str]) -> bool:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *specs]
    print(f"ensure_deps: installing {' '.join(specs)} ...", flush=True)
    return subprocess.run(cmd).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", action="store_true", help="benchmark dependencies")
    parser.add_argument("--lint", action="store_true", help="linters (ruff, mypy)")
    args = parser.parse_args()
    required = BENCH_REQUIRED if args.bench else LINT_REQUIRED if args.lint else TEST_REQUIRED
    need = missing(required)
    if need and not pip_install(need):
        print(
            f"ensure_deps: could not install {' '.join(need)}. Install them yourself:\n"
            f"    {sys.executable} -m pip install {' '.join(need)}\n"
            "(or create a virtual environment first:"
            " python3 -m venv .venv && . .venv/bin/activate)",
            file=sys.stderr,
        )
        return 1
    if args.bench:
        optional = missing(BENCH_OPTIONAL)
        if optional and not pip_install(optional):
            print(f"ensure_deps: optional {' '.join(optional)} not installed; "
                  "the benchmark skips what needs them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
