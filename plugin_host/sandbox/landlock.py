"""Landlock through its three syscalls (ctypes): filesystem allow-lists, TCP bind/connect denial and
IPC scoping (no signals to, no abstract unix sockets of, processes outside the sandbox).

Landlock binds the calling thread (and what it later creates or execs), so it must be applied while the
process has a single thread: the sandbox launcher does it just before execve. The kernel's ABI version
decides which rights exist; rights the kernel does not know are left out (and `doctor` says so).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

# Filesystem rights, with the ABI version that introduced them.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
# Rights that make sense on a regular file (a rule on a file with other rights is EINVAL).
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ_ONLY = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LandlockError(OSError):
    """Landlock is unavailable or refused the ruleset; the message names the step and the errno."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _nr(index: int) -> int:
    nrs = _SYSCALLS.get(platform.machine())
    if nrs is None:
        raise LandlockError(f"Landlock syscall numbers unknown for {platform.machine()}")
    return nrs[index]


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 if Landlock is not available (not built or disabled)."""
    try:
        nr = _nr(0)
    except LandlockError:
        return 0
    v = _libc().syscall(nr, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(v), 0)


@dataclass(frozen=True)
class Rights:
    """What a ruleset of this ABI handles."""

    fs: int
    net: int
    scoped: int


def rights_for(abi: int) -> Rights:
    """The rights a ruleset handles at ABI `abi` (every filesystem right, TCP, IPC scopes)."""
    fs = _FS_BY_ABI.get(min(abi, 5), 0)
    net = (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0
    return Rights(fs, net, scoped)


def restrict_self(
    read_only: Iterable[str],
    read_write: Iterable[str],
    list_only: Iterable[str] = (),
    *,
    abi: int | None = None,
) -> Rights:
    """Confine the calling thread (and what it execs): read (and execute) beneath `read_only`, all file
    rights beneath `read_write`, listing (names, not contents) beneath `list_only`, nothing elsewhere;
    no TCP bind/connect (ABI ≥ 4); no signals to and no
    abstract unix sockets of processes outside (ABI ≥ 6). Paths that do not exist are skipped. The
    caller must have set no_new_privs. Returns the rights handled; LandlockError on failure."""
    abi = abi_version() if abi is None else abi
    if abi < 1:
        raise LandlockError("Landlock is not available in this kernel")
    rights = rights_for(abi)
    libc = _libc()
    attr = _RulesetAttr(rights.fs, rights.net, rights.scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_nr(0), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        for paths, allowed in (
            (read_only, READ_ONLY & rights.fs),
            (read_write, rights.fs),
            (list_only, FS_READ_DIR),
        ):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    is_dir = os.path.isdir(path)
                    rule = _PathBeneathAttr(allowed if is_dir else allowed & _FILE_RIGHTS, fd)
                    if libc.syscall(_nr(1), ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                        err = ctypes.get_errno()
                        raise LandlockError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
                finally:
                    os.close(fd)
        if libc.syscall(_nr(2), ruleset, 0) != 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset)
    return rights
