"""Give back the resident pages of a memory-mapped tensor once it has been repacked into RAM.

A TQ2_0/TQ1_0 tensor is copied once into the compact runtime layout; without this its file pages would
stay mapped and resident too, counting the weights twice in the process's RSS. The pages stay in the
kernel's page cache, so nothing is lost if the range is read again.
"""

from __future__ import annotations

import mmap

import numpy as np


def _backing_mmap(view: np.ndarray) -> mmap.mmap | None:
    obj: object = view
    while obj is not None:
        if isinstance(obj, mmap.mmap):
            return obj
        obj = getattr(obj, "_mmap", None) or getattr(obj, "base", None)
    return None


def release_file_pages(view: np.ndarray) -> bool:
    """madvise(MADV_DONTNEED) the whole pages under `view` if it is a view of a read-only file mapping.

    Returns False (and does nothing) for arrays that are not backed by an mmap or on platforms without
    madvise.
    """
    mm = _backing_mmap(view)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or view.size == 0:
        return False
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    start = view.ctypes.data - base
    end = start + view.nbytes
    page = mmap.PAGESIZE
    first = (start + page - 1) // page * page  # only pages wholly inside the tensor: neighbours stay
    last = end // page * page
    if last <= first:
        return False
    mm.madvise(mmap.MADV_DONTNEED, first, last - first)
    return True
