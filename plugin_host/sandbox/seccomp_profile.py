"""The seccomp-bpf profile of a plugin process, built with libseccomp (through `pyseccomp`).

A deny-list over a default of ALLOW: plugins run arbitrary language runtimes (CPython, numba's LLVM
JIT, gRPC's C core), whose syscall sets are large and change between versions, so an allow-list would
break them in ways tests cannot enumerate; what a plugin must never do is short and stable.
mmap/mprotect with PROT_EXEC stay allowed: numba's JIT needs them.

Calls no runtime makes on its own (KILLED) end the process with SIGSYS: the supervisor sees the
signal, and logs and counts a `seccomp_violation`. Calls a runtime may probe fail with an errno
instead: a socket of any family but AF_UNIX (EAFNOSUPPORT); a new process (EAGAIN, unless the
configuration allows subprocesses: this, not RLIMIT_NPROC, stops a fork bomb when the plugin's uid
outside is root's, which that limit exempts); personality changes (EPERM); clone3 (ENOSYS, so the C
library falls back to clone, whose flags the filter can read — clone3's are behind a pointer).

KILLED:
- ptrace and cross-process memory access (process_vm_readv/writev, pidfd_getfd, kcmp);
- mount and the new mount API, pivot_root, chroot, umount2;
- namespaces: unshare, setns, clone with any CLONE_NEW* flag;
- bpf, perf_event_open, userfaultfd, io_uring (it performs socket operations without the socket
  syscall), kexec_load/kexec_file_load, keyctl/add_key/request_key, init/finit/delete_module, reboot,
  swapon/swapoff, acct, quotactl, syslog, clock and time setting, iopl/ioperm,
  open_by_handle_at/name_to_handle_at, fanotify_init.
"""

from __future__ import annotations

import errno
import socket

from .namespaces import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

KILLED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
    "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie", "vhangup",
)  # fmt: skip
NAMESPACE_FLAGS = (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
)  # fmt: skip
CLONE_THREAD = 0x00010000
PERSONALITY_QUERY = 0xFFFFFFFF


def available() -> tuple[bool, str]:
    """(True, what builds the filter) if the profile can be built here, else (False, why not)."""
    try:
        import pyseccomp
    except (ImportError, OSError) as exc:
        return False, f"pyseccomp/libseccomp not usable: {exc}"
    return True, f"libseccomp via pyseccomp {getattr(pyseccomp, '__version__', '?')}"


def install(*, allow_subprocesses: bool = False) -> int:
    """Load the profile into the calling thread (and what it execs); the caller must have set
    no_new_privs. Returns the number of rules. OSError if the kernel or libseccomp refuses."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    n = 0
    for family_call in ("socket", "socketpair"):
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), family_call, sc.Arg(0, sc.NE, socket.AF_UNIX))
        n += 1
    for name in KILLED:
        try:
            f.add_rule(sc.KILL_PROCESS, name)
            n += 1
        except (RuntimeError, OSError, ValueError):
            pass  # a syscall this architecture / libseccomp does not know cannot be called either
    for flag in NAMESPACE_FLAGS:
        f.add_rule(sc.KILL_PROCESS, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        n += 1
    if not allow_subprocesses:
        # A clone without CLONE_THREAD makes a process (fork, vfork, posix_spawn); threads stay allowed.
        f.add_rule(sc.ERRNO(errno.EAGAIN), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
        for name in ("fork", "vfork"):
            f.add_rule(sc.ERRNO(errno.EAGAIN), name)
        n += 3
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(sc.ERRNO(errno.EPERM), "personality", sc.Arg(0, sc.NE, PERSONALITY_QUERY))
    f.load()
    return n + 2
