"""The seccomp-bpf profile of a plugin process, built with libseccomp (through `pyseccomp`).

A deny-list over a default of ALLOW: plugins run arbitrary language runtimes (CPython, numba's LLVM
JIT, gRPC's C core), whose syscall sets are large and change between versions, so an allow-list would
break them in ways tests cannot enumerate; what a plugin must never do is short and stable.
mmap/mprotect with PROT_EXEC stay allowed: numba's JIT needs them.

Calls aimed at the network or at another process (NOTIFIED: a socket of any family but AF_UNIX,
ptrace, cross-process memory access, a signal to any process but the plugin's own) go to the core
when the launcher was given a listener socket: the kernel holds the call, the core's watcher
(plugin_host/blocked_calls.py) logs and counts it naming the plugin, the syscall and its arguments,
and fails it with an errno (a signal to the plugin's own processes goes on to the kernel, where
Landlock's signal scope still applies). Without a listener they fail in the kernel as before
(EAFNOSUPPORT for sockets, SIGSYS for ptrace and process_vm_*, Landlock's EPERM for signals). Only
these rare calls leave the kernel: AF_UNIX sockets and signals to oneself are decided in-kernel.

Calls no runtime makes on its own (KILLED) end the process with SIGSYS: the supervisor sees the
signal, and logs and counts a `seccomp_violation`. Calls a runtime may probe fail with an errno
instead: a new process (EAGAIN, unless the
configuration allows subprocesses: this, not RLIMIT_NPROC, stops a fork bomb when the plugin's uid
outside is root's, which that limit exempts); personality changes (EPERM); clone3 (ENOSYS, so the C
library falls back to clone, whose flags the filter can read — clone3's are behind a pointer).

KILLED:
- cross-process fd and memory access (pidfd_getfd, kcmp; ptrace and process_vm_readv/writev when
  no listener is given);
- mount and the new mount API, pivot_root, chroot, umount2;
- namespaces: unshare, setns, clone with any CLONE_NEW* flag;
- bpf, perf_event_open, userfaultfd, io_uring (it performs socket operations without the socket
  syscall), kexec_load/kexec_file_load, keyctl/add_key/request_key, init/finit/delete_module, reboot,
  swapon/swapoff, acct, quotactl, syslog, clock and time setting, iopl/ioperm,
  open_by_handle_at/name_to_handle_at, fanotify_init.
"""

from __future__ import annotations

import errno
import os
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

# Syscall -> the errno the core answers with (None: the core decides; signals to the plugin's own
# processes go on). Only these reach the listener.
NOTIFIED: dict[str, int | None] = {
    "socket": errno.EAFNOSUPPORT, "socketpair": errno.EAFNOSUPPORT,
    "ptrace": errno.EPERM, "process_vm_readv": errno.EPERM, "process_vm_writev": errno.EPERM,
    "kill": None, "tgkill": None, "tkill": None, "rt_sigqueueinfo": None, "rt_tgsigqueueinfo": None,
    "pidfd_send_signal": None,
}  # fmt: skip
_SOCKET_CALLS = ("socket", "socketpair")
_CROSS_PROCESS = ("ptrace", "process_vm_readv", "process_vm_writev")
_SIGNAL_BY_TGID = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # arg 0 is the target
_SIGNAL_OTHER = ("tkill", "pidfd_send_signal")  # target behind a thread id or a pidfd: core decides
KILLED = (
    "pidfd_getfd", "kcmp",
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


def _add_notified(f, sc, listen: bool) -> int:  # noqa: ANN001
    """The NOTIFIED rules: to the listener when there is one, else today's in-kernel answers."""
    n = 0
    for name in _SOCKET_CALLS:
        action = sc.NOTIFY if listen else sc.ERRNO(errno.EAFNOSUPPORT)
        f.add_rule(action, name, sc.Arg(0, sc.NE, socket.AF_UNIX))
        n += 1
    for name in _CROSS_PROCESS:
        f.add_rule(sc.NOTIFY if listen else sc.KILL_PROCESS, name)
        n += 1
    if listen:
        me = os.getpid()  # exec keeps it: the plugin's own pid, signalled in-kernel
        for name in _SIGNAL_BY_TGID:
            f.add_rule(sc.NOTIFY, name, sc.Arg(0, sc.NE, me))
        for name in _SIGNAL_OTHER:
            f.add_rule(sc.NOTIFY, name)
        n += len(_SIGNAL_BY_TGID) + len(_SIGNAL_OTHER)
    return n


def install(*, allow_subprocesses: bool = False, listener_socket: int | None = None) -> int:
    """Load the profile into the calling thread (and what it execs); the caller must have set
    no_new_privs. With `listener_socket` (a connected unix socket to the core) the NOTIFIED calls go
    to a listener that is sent over it and closed here. Returns the number of rules. OSError if the
    kernel or libseccomp refuses."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    n = _add_notified(f, sc, listener_socket is not None)
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
    if listener_socket is not None:
        _hand_over_listener(sc, f, listener_socket)
    return n + 2


def _hand_over_listener(sc, f, listener_socket: int) -> None:  # noqa: ANN001
    from .seccomp_notify import send_listener

    # libseccomp keeps the listener of the filter it loaded; pyseccomp has no public accessor.
    listener = sc._libseccomp.seccomp_notify_fd(f._filter)  # noqa: SLF001
    if listener < 0:
        raise OSError(-listener, f"seccomp_notify_fd: {os.strerror(-listener)}")
    try:
        send_listener(listener_socket, listener)
    finally:
        os.close(listener)  # the plugin must never hold it: it could answer its own calls
