"""The core's side of seccomp user notification: see, log, count and refuse what a plugin's sandbox
blocks inside it (a TCP socket, ptrace, a signal to the core...).

`BlockedCallWatch` is made before a sandboxed plugin is spawned (like the fast lane): the launcher
gets one end of a unix socket ($TRITIUM_SANDBOX_LISTENER_FD) and sends its seccomp listener over it
(sandbox/seccomp_profile.py says which calls reach it). One daemon thread per plugin then reads the
calls the plugin is held in, records each as a security event

    tritium_plugin_security_events_total{plugin="p", event="blocked", reason="socket"}

with the call and its arguments in the log, and answers: the errno the profile names, or, for a
signal to a process of the plugin's own sandbox (its own threads, children, process group), lets the
kernel go on (Landlock's signal scope still applies there). Calls made before the plugin's handshake
count as `event="blocked_at_start"`, logged at INFO: gRPC's C core opens AF_INET/AF_INET6 sockets
while it starts (four calls per process), and an attack at import time looks the same. The thread
ends when the plugin's processes are gone (the listener then polls POLLHUP) or the host closes it.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import threading

from . import security_events
from .sandbox import seccomp_notify
from .sandbox.seccomp_profile import NOTIFIED

log = logging.getLogger("tritium.plugin_host.blocked_calls")

_POLL_MS = 1000  # how often a quiet watch looks at its closed flag
_PTRACE_REQUESTS = {0: "PTRACE_TRACEME", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH", 0x4206: "PTRACE_SEIZE"}


def _syscall_names() -> dict[int, str]:
    try:
        import pyseccomp as sc
    except (ImportError, OSError):
        return {}
    names = {}
    for name in NOTIFIED:
        try:
            names[sc.resolve_syscall(sc.Arch.NATIVE, name)] = name
        except (RuntimeError, OSError, ValueError):
            pass
    return names


_NAMES = _syscall_names()


def _int32(value: int) -> int:
    # The kernel reads pid_t / int arguments from the low 32 bits of the register.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _signame(value: int) -> str:
    try:
        return signal.Signals(_int32(value)).name
    except ValueError:
        return str(_int32(value))


def describe(name: str, args: tuple[int, ...]) -> str:
    """A readable form of the call, e.g. `socket(AF_INET, SOCK_STREAM, 0)` or `kill(1234, SIGCONT)`."""
    if name in ("socket", "socketpair"):
        family, kind = _int32(args[0]), _int32(args[1])
        try:
            fam = socket.AddressFamily(family).name
        except ValueError:
            fam = str(family)
        try:
            knd = socket.SocketKind(kind & 0xF).name
        except ValueError:
            knd = str(kind)
        return f"{name}({fam}, {knd}, {_int32(args[2])})"
    if name == "ptrace":
        req = _int32(args[0])
        return f"ptrace({_PTRACE_REQUESTS.get(req, req)}, {_int32(args[1])})"
    if name in ("kill", "tkill"):
        return f"{name}({_int32(args[0])}, {_signame(args[1])})"
    if name == "tgkill":
        return f"tgkill({_int32(args[0])}, {_int32(args[1])}, {_signame(args[2])})"
    if name in ("rt_sigqueueinfo", "rt_tgsigqueueinfo", "process_vm_readv", "process_vm_writev"):
        return f"{name}({_int32(args[0])}, ...)"
    if name == "pidfd_send_signal":
        return f"pidfd_send_signal(fd {_int32(args[0])}, {_signame(args[1])})"
    return f"{name}({', '.join(hex(a) for a in args)})"


def _status(pid: int | str) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _same_sandbox(caller: int, target: int) -> bool:
    """True if process `target` lives in `caller`'s user namespace (the plugin's own sandbox: its
    threads and children; the core and other plugins are elsewhere)."""
    try:
        return os.readlink(f"/proc/{target}/ns/user") == os.readlink(f"/proc/{caller}/ns/user")
    except OSError:
        return False


def _signal_target(name: str, caller: int, args: tuple[int, ...]) -> int | None:
    """The process a signal call aims at (None: a set of processes or nothing we can name)."""
    if name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "tkill"):
        pid = _int32(args[0])
        if name == "kill" and pid <= 0:
            # 0: the caller's own process group; -g: group g; -1: every process it may signal.
            group = os.getpgid(caller) if pid == 0 else -pid
            return caller if pid != -1 and group == os.getpgid(caller) else None
        return pid
    try:  # pidfd_send_signal: the pidfd's process, read from the caller's fdinfo
        with open(f"/proc/{caller}/fdinfo/{_int32(args[0])}") as f:
            pid_line = next((ln for ln in f if ln.startswith("Pid:")), "")
        return int(pid_line.split()[1])
    except (OSError, ValueError, IndexError):
        return None


def decide(name: str, caller: int, args: tuple[int, ...]) -> int:
    """The errno to answer a NOTIFIED call with, or 0 to let the kernel go on with it."""
    fixed = NOTIFIED.get(name, errno.EPERM)
    if fixed is not None:
        return fixed
    target = _signal_target(name, caller, args)
    return 0 if target is not None and _same_sandbox(caller, target) else errno.EPERM


class BlockedCallWatch:
    """One plugin process's seccomp listener, as the core holds it (see the module docstring)."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self._host, self._child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._child.set_inheritable(True)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set once the launcher handed its listener over
        self.ready = False  # set by the launcher once the plugin's handshake and health check passed
        self.seen = 0  # notifications answered (own-process signals included)

    def child_fd(self) -> int:
        """The fd the launcher inherits (pass_fds)."""
        return self._child.fileno()

    def env(self) -> dict[str, str]:
        """What the launcher's environment gets."""
        return {seccomp_notify.LISTENER_ENV: str(self.child_fd())}

    def after_spawn(self) -> None:
        """Close the launcher's end here and start the watcher thread."""
        self._child.close()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"blocked-calls-{self.plugin}")
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the watcher thread to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def close(self) -> None:
        """Stop watching (the thread ends within a second; a held call then gets ENOSYS)."""
        self._closed = True
        try:
            self._host.shutdown(socket.SHUT_RDWR)  # wakes a thread still waiting for the listener
        except OSError:
            pass
        if self._thread is None:
            self._child.close()

    def _run(self) -> None:
        try:
            listener = seccomp_notify.receive_listener(self._host)
        except OSError:
            listener = None
        finally:
            self._host.close()
        if listener is None:
            return  # no seccomp listener for this launch (not configured, or the launcher failed)
        self.listening.set()
        try:
            self._serve(listener)
        finally:
            os.close(listener)

    def _serve(self, listener: int) -> None:
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        while not self._closed:
            events = poller.poll(_POLL_MS)
            if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
                return  # every process under the filter is gone
            if not events:
                continue
            try:
                call = seccomp_notify.receive(listener)
            except OSError:
                continue  # ENOENT: the caller was killed before we read it
            self._answer(listener, call)

    def _answer(self, listener: int, call: seccomp_notify.Notification) -> None:
        name = _NAMES.get(call.nr, f"syscall_{call.nr}")
        try:
            error = decide(name, call.pid, call.args)
        except Exception:  # the decision must never leave the plugin held: refuse
            log.exception("plugin %s: cannot decide on %s", self.plugin, name)
            error = errno.EPERM
        self.seen += 1
        if error:
            detail = f"{describe(name, call.args)} by pid {call.pid}: {errno.errorcode.get(error, error)}"
            if self.ready:
                security_events.record(self.plugin, "blocked", name, detail)
            else:
                security_events.record(self.plugin, "blocked_at_start", name, detail, level=logging.INFO)
        seccomp_notify.respond(listener, call.id, error=error, allow=not error)
