"""Shared-memory segments the core creates for a plugin to read.

A segment is created 0600 by its creator (sdk/shm.py). A plugin of an unprivileged core runs as the
core's uid outside its namespace and opens it as the owner; a plugin of a root core runs as its own
uid for real (the sandbox's `identity`) and could not. `share_segment` hands such a segment to the
plugin's uid, still 0600: the root core keeps its access through its capabilities, and no other uid
gains any.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of process `pid` as the core sees them (/proc/<pid>/status)."""
    uid = gid = -1
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("Gid:"):
            gid = int(line.split()[1])
    return uid, gid


def share_segment(path: Path | str, pid: int) -> None:
    """Let plugin process `pid` open the core's segment at `path`: chown it to the plugin's uid and
    gid when they differ from the core's (only a root core can, and only then is it needed)."""
    uid, gid = process_ids(pid)
    if os.geteuid() == 0 and (uid, gid) != (os.getuid(), os.getgid()):
        os.chown(path, uid, gid, follow_symlinks=False)
