"""The package stays type-checked (mypy --strict), lint-clean and formatted (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_mypy_strict() -> None:
    result = _run("mypy", "--strict", "framework")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_tests() -> None:
    # tests/ has no __init__.py (tests/conformance/ has one) and its modules import each other
    # as tests.x: hence --explicit-package-bases, run from the root. The benchmarks that
    # tests/test_load.py imports are checked with them.
    result = _run("mypy", "--strict", "--explicit-package-bases", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    folders = [
        name for name in ("framework", "services", "tests", "bench") if (ROOT / name).is_dir()
    ]
    result = _run("ruff", "check", *folders)
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run("ruff", "format", "--check", *folders)
    assert result.returncode == 0, result.stdout + result.stderr
