"""Where the benchmarks cache the models they write: $TRITIUM_CACHE/bench (default ~/.cache/tritium)."""

from __future__ import annotations

import os
from pathlib import Path


def bench_cache_dir() -> Path:
    """The folder the benchmark models are written to once and reused from."""
    return Path(os.environ.get("TRITIUM_CACHE", Path.home() / ".cache" / "tritium")) / "bench"
