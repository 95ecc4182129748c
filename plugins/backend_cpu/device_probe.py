"""What this machine's CPU offers, for Backend.Probe: model name, cores, memory, SIMD features."""

from __future__ import annotations

import os

from tritium.protos.tritium.plugin.v1 import backend_pb2

# SIMD features that matter for ternary/int8 kernels, in the order they are reported.
_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "f16c", "fma", "neon", "asimd", "asimddp", "sve")


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or "cpu", flags


def _meminfo() -> tuple[int, int]:
    total = avail = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    return total, avail


def probe_cpu() -> backend_pb2.DeviceInfo:
    """The CPU as a DeviceInfo (device 0). Score 1: always usable, the baseline others beat."""
    name, flags = _cpuinfo()
    total, avail = _meminfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return backend_pb2.DeviceInfo(
        backend="cpu",
        device_id=0,
        name=name,
        memory_total=total,
        memory_free=avail,
        compute_units=cores,
        score=1.0,
        features=[f for f in _FEATURES if f in flags],
    )
