"""Runs the installed `tritium` entry point as a user would; shared by the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRITIUM = Path(sys.executable).parent / "tritium"


def tritium(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(TRITIUM), *map(str, args)], capture_output=True, text=True, input=stdin,
                          timeout=120)


def needs_runtime() -> None:
    compute = pytest.importorskip("tritium.core.compute")
    if not hasattr(compute, "Runtime"):
        pytest.skip("tritium.core.compute.Runtime is not in the tree yet")
