"""Resource limits of a plugin process, and no_new_privs.

Memory is bounded with RLIMIT_DATA, not RLIMIT_AS: RLIMIT_AS counts every mapping, including the
memory-mapped model file (read-only, shared, page cache), so a backend of a 2 GB model would need a
2 GB larger limit for no reason; RLIMIT_DATA counts private writable memory (heap, anonymous mmaps,
numpy buffers), which is what a runaway plugin grows. This kernel's cgroup v2 has no memory controller,
so rlimits are the memory bound.
"""

from __future__ import annotations

import ctypes
import resource
from dataclasses import asdict, dataclass

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_DUMPABLE = 4

GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Per-process limits; 0 means unlimited (left as inherited)."""

    memory_bytes: int = 4 * GiB  # RLIMIT_DATA
    cpu_seconds: int = 0  # RLIMIT_CPU: SIGXCPU at the limit, SIGKILL one second later
    open_files: int = 1024  # RLIMIT_NOFILE
    # RLIMIT_NPROC: threads count, per user id; with `identity` each plugin has its own uid, so this
    # bounds each plugin's threads (without it the core's uid: not binding for root).
    processes: int = 256
    file_bytes: int = 8 * GiB  # RLIMIT_FSIZE (shared-memory segments are files too)
    core_bytes: int = 0  # RLIMIT_CORE: no core dumps

    def as_dict(self) -> dict[str, int]:
        """The limits as a JSON-able dict."""
        return asdict(self)


_RLIMITS = {
    "memory_bytes": resource.RLIMIT_DATA,
    "cpu_seconds": resource.RLIMIT_CPU,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
    "file_bytes": resource.RLIMIT_FSIZE,
}


def apply_limits(limits: Limits) -> dict[str, tuple[int, int]]:
    """Set the rlimits of the calling process (soft = hard, except CPU: hard = soft + 1 so the plugin
    gets SIGXCPU first). Returns what was set, by name."""
    applied = {}
    for name, which in _RLIMITS.items():
        value = getattr(limits, name)
        if value <= 0:
            continue
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))
        applied[name] = (value, hard)
    resource.setrlimit(resource.RLIMIT_CORE, (limits.core_bytes, limits.core_bytes))
    applied["core_bytes"] = (limits.core_bytes, limits.core_bytes)
    return applied


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def set_no_new_privs() -> None:
    """Set no_new_privs: neither this process nor what it execs can gain privileges (setuid binaries,
    file capabilities). Required before Landlock and seccomp as an unprivileged process."""
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def no_new_privs() -> bool:
    """Whether no_new_privs is set on the calling process."""
    return _prctl(PR_GET_NO_NEW_PRIVS) == 1


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE (a uid change clears it, which would make /proc/self/uid_map unwritable)."""
    _prctl(PR_SET_DUMPABLE, 1 if on else 0)
