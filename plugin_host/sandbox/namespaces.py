"""Identity and network isolation: the plugin runs as an unprivileged uid (65534, `nobody`) inside its
own user and network namespaces.

- A core running as root first drops to uid/gid 65534 for real (setgroups/setgid/setuid), so the plugin
  is `nobody` outside the namespace too and can touch nothing of root's.
- It then unshares a user namespace (unprivileged, so this works for any core user) and a network
  namespace, and maps uid/gid 65534 inside to its own ids outside. A core that is not root cannot
  change its uid: the plugin is 65534 inside, but the kernel still sees the core's uid outside; the
  other layers (Landlock, seccomp, no network) carry the confinement then, and `doctor` says so.
- The new network namespace has only a loopback interface, down: no route anywhere. The plugin's one
  channel is the unix socket it binds in its scratch folder (pathname unix sockets are reached
  through the filesystem, not the network namespace).
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NOBODY = 65534


def unshare(flags: int) -> None:
    """unshare(2) of the calling (single-threaded) process; OSError naming the flags."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare({flags:#x}): {os.strerror(err)}")


def drop_to(uid: int = NOBODY, gid: int = NOBODY) -> bool:
    """If running as root, become uid/gid for real (no supplementary groups). Returns True if it
    changed identity, False if not root (nothing to drop, and no right to)."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"setresuid({uid}) did not take effect")
    return True


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_user_and_net_namespace(inside_uid: int = NOBODY, inside_gid: int = NOBODY) -> None:
    """Unshare a user and a network namespace and map `inside_uid`/`inside_gid` to the current ids.
    OSError (naming the step) if the kernel refuses (user namespaces disabled or exhausted)."""
    outside_uid, outside_gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER | CLONE_NEWNET)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside_uid} {outside_uid} 1\n")
    _write("/proc/self/gid_map", f"{inside_gid} {outside_gid} 1\n")


def in_own_net_namespace(pid: int | str = "self") -> bool:
    """True if process `pid` is in another network namespace than the calling process."""
    return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def in_own_user_namespace(pid: int | str = "self") -> bool:
    """True if process `pid` is in another user namespace than the calling process."""
    return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
