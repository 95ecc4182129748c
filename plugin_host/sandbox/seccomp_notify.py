"""seccomp user notification, the kernel interface (linux/seccomp.h), in plain ctypes.

A filter loaded with SECCOMP_RET_USER_NOTIF rules (libseccomp's NOTIFY action) gives its loader a
listener fd. A process that makes a matching syscall then sleeps in the kernel until whoever holds
the listener answers: SECCOMP_IOCTL_NOTIF_RECV reads the call (`struct seccomp_notif`: id, pid, the
syscall number and its six register arguments), SECCOMP_IOCTL_NOTIF_SEND answers it (`struct
seccomp_notif_resp`: an errno, or FLAG_CONTINUE to let the kernel run the call). When every copy of
the listener is closed (the core died), the kernel answers ENOSYS to waiting and later calls, so a
plugin never hangs on a dead core.

The sandbox launcher hands its listener to the core over a unix socket (SCM_RIGHTS) and closes its
own copy before exec'ing the plugin: a plugin holding its listener could answer its own calls.

Layouts and ioctl numbers are those of this kernel's headers (x86_64 and aarch64 share them):
sizeof(seccomp_notif) 80, sizeof(seccomp_notif_resp) 24, RECV 0xc0502100, SEND 0xc0182101,
ID_VALID 0x40082102 (tests/security/test_seccomp_notify.py checks them against linux/seccomp.h).
"""

from __future__ import annotations

import array
import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass

NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data.nr, data.arch, data.instruction_pointer, args
RESP = struct.Struct("=QqiI")  # id, val, error, flags
IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
IOCTL_NOTIF_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
FLAG_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
LISTENER_ENV = "TRITIUM_SANDBOX_LISTENER_FD"  # the launcher's end of the socket the listener goes over

# ctypes (not fcntl.ioctl, which holds the GIL) so that a blocked RECV never stalls the core.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int


@dataclass(frozen=True)
class Notification:
    """One syscall a sandboxed process is waiting in: who, which, and its raw register arguments."""

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]


def _ioctl(fd: int, request: int, buf: ctypes.Array) -> None:
    if _libc.ioctl(fd, request, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def receive(listener: int) -> Notification:
    """Read one pending notification (blocks until there is one; call after poll says POLLIN).
    OSError ENOENT if the waiting call went away (its process was killed) before it was read."""
    buf = ctypes.create_string_buffer(NOTIF.size)  # zeroed, as the kernel requires
    _ioctl(listener, IOCTL_NOTIF_RECV, buf)
    nid, pid, _flags, nr, arch, _ip, *args = NOTIF.unpack(buf.raw)
    return Notification(nid, pid, nr, arch, tuple(args))


def respond(listener: int, nid: int, *, error: int = 0, allow: bool = False) -> None:
    """Answer notification `nid`: fail the call with `error` (a positive errno), or with allow=True
    let the kernel run it (only for calls another layer still checks: the arguments the listener saw
    may change before the kernel reads them). A call that went away meanwhile is ignored."""
    resp = RESP.pack(nid, 0, 0 if allow else -error, FLAG_CONTINUE if allow else 0)
    try:
        _ioctl(listener, IOCTL_NOTIF_SEND, ctypes.create_string_buffer(resp, RESP.size))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def send_listener(sock_fd: int, listener: int) -> None:
    """Pass `listener` over the connected unix socket `sock_fd` (SCM_RIGHTS)."""
    with socket.socket(fileno=os.dup(sock_fd)) as sock:
        socket.send_fds(sock, [b"L"], [listener])


def receive_listener(sock: socket.socket) -> int | None:
    """The listener fd sent over `sock` (close-on-exec), or None when the other end closed without
    sending one (the launcher ran without seccomp, or failed)."""
    fds = array.array("i")
    _msg, ancdata, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(fds.itemsize), socket.MSG_CMSG_CLOEXEC)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None
