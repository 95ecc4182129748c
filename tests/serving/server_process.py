"""Start a real `tritium serve` process for end-to-end tests and wait until it answers /health."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

STARTUP_TIMEOUT_S = 120  # a cold numba cache compiles the kernels on first start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(serve_args: list[str], port: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m tritium.core.cli serve --port PORT *serve_args`, output to `log`; (process, base URL)
    once /health answers 200. Fails the test (killing the process) if it exits or never gets healthy."""
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tritium.core.cli", "serve", "--port", str(port), *serve_args],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not answer /health within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
        time.sleep(0.2)
