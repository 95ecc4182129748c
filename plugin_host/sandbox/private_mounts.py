"""Make the paths a plugin needs reachable by its uid, in a private mount namespace, before a root
launcher drops to that uid.

A root core's runtime often lives where the plugin's uid cannot go (here: /root/.pyenv under /root, mode
0700). Changing host permissions is not ours to do; instead the launcher, still root, unshares a mount
namespace (private propagation: nothing leaks back to the host), and for each folder on the way to a
needed path that others cannot traverse (a "blocker", e.g. /root) it

  1. opens every needed path beneath the blocker (O_PATH, before anything is hidden),
  2. mounts a small tmpfs over the blocker, mode 0711 (traversable, not listable),
  3. recreates the way down to each needed path in that tmpfs (0711 folders) and bind-mounts the path
     back from its fd, read-only unless it is a read-write path.

So the plugin sees exactly the needed paths at their usual places and nothing else of the blocker
(/root's other files are not there at all); Landlock then confines it further as usual. Only the
plugin's process sees this: the host's mounts are untouched.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .namespaces import CLONE_NEWNS, unshare

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def traversable_by_others(path: Path) -> bool:
    """True if any uid may search folder `path` (o+x)."""
    try:
        return bool(os.stat(path).st_mode & stat.S_IXOTH)
    except OSError:
        return True  # absent: nothing to hide or expose


def blocker(path: str) -> Path | None:
    """The top-most folder on the way to `path` that others cannot traverse, or None."""
    real = Path(os.path.realpath(path))
    for parent in reversed(real.parents):
        if parent != Path("/") and not traversable_by_others(parent):
            return parent
    return None


def _innermost(paths: Iterable[str]) -> list[str]:
    # Exposing /a also exposes /a/b: keep the outer one only.
    ordered = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    kept: list[str] = []
    for p in ordered:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


def expose(read_only: Iterable[str], read_write: Iterable[str] = ()) -> list[str]:
    """In a new private mount namespace, make every path of `read_only` / `read_write` reachable by
    any uid at its own path (see the module docstring). Needs root; call before dropping the uid.
    Returns the blockers covered (empty: nothing needed hiding, no namespace was made)."""
    writable = set(_innermost(read_write))
    needed = _innermost([*read_only, *read_write])
    by_blocker: dict[Path, list[str]] = {}
    for p in needed:
        b = blocker(p)
        if b is not None:
            by_blocker.setdefault(b, []).append(p)
    if not by_blocker:
        return []
    unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for top, paths in sorted(by_blocker.items(), key=lambda kv: len(kv[0].parts)):
        fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in paths}
        try:
            _mount("tmpfs", str(top), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=1m")
            for p, fd in fds.items():
                _bind_back(p, fd, rw=p in writable)
        finally:
            for fd in fds.values():
                os.close(fd)
    return [str(b) for b in sorted(by_blocker)]


def _bind_back(path: str, fd: int, *, rw: bool) -> None:
    target = Path(path)
    for folder in [*reversed(target.parents), *([target] if stat.S_ISDIR(os.fstat(fd).st_mode) else [])]:
        if not folder.exists():
            folder.mkdir(mode=0o711)
            os.chmod(folder, 0o711)  # not the umask's choice: traversable, not listable
    if not target.exists():
        target.touch(mode=0o600)  # a file's mount point
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    if not rw:
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
