"""Signals to plugin processes that tests can rely on having taken effect."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _thread_states(pid: int) -> list[str]:
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            # "tid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
    return states


def freeze(pid: int, timeout_s: float = 10.0) -> None:
    """SIGSTOP `pid` and return once every one of its threads is stopped.

    kill() returns before the stop takes effect: until one of the plugin's threads has run to take the
    signal, another one woken by a request can still answer it. A test that freezes a plugin so that
    it "cannot answer" must wait for this."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        states = _thread_states(pid)
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)
    raise TimeoutError(f"process {pid} did not stop within {timeout_s} s (threads: {_thread_states(pid)})")
