"""Write the output GGUF atomically: into a temporary file beside the destination, fsync, then
`os.replace` — so DST is either the old file (or absent) or the complete new one, never half-written.
Any failure (a full disk included) removes the temporary file and raises QuantizeError naming it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import QuantizeError


def check_free_space(dst: Path, needed: int) -> None:
    """QuantizeError before the run when the destination's file system has less than `needed` bytes."""
    folder = dst.parent if str(dst.parent) else Path(".")
    if not folder.is_dir():
        raise QuantizeError(f"{dst}: the output folder {folder} does not exist")
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise QuantizeError(f"{dst}: not enough free space: the output needs about {needed / 1e6:.1f} MB, "
                            f"{folder} has {free / 1e6:.1f} MB free")


@contextlib.contextmanager
def atomic_path(dst: Path) -> Iterator[Path]:
    """Yield a temporary path next to `dst`; on success it becomes `dst`, on any error it is removed."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except OSError as exc:
        _remove(tmp)
        if exc.errno == errno.ENOSPC:
            raise QuantizeError(f"{dst}: the disk is full (writing {tmp.name}); nothing was written to "
                                f"{dst.name} and the temporary file was removed") from None
        raise QuantizeError(f"{dst}: write failed ({exc.strerror or exc}); nothing was written to "
                            f"{dst.name} and the temporary file was removed") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def write_atomically(dst: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` and publish tmp as dst atomically (see atomic_path)."""
    with atomic_path(dst) as tmp:
        write(tmp)
