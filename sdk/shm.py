"""Shared-memory tensors: segments in /dev/shm set up once, numpy views into them, and the
`TensorHandle` messages that describe a view to the other process.

Bulk data (activations, logits, quantized payloads) never goes through protobuf on the hot path:
the producer writes into a segment, and the message carries (segment name, offset, dtype, shape).
Segments are plain files under /dev/shm opened by name (not multiprocessing.shared_memory, whose
resource tracker unlinks segments behind the owner's back). A segment's name starts with
`tritium-<creator pid>-`, so a host can remove what a crashed plugin left behind.
"""

from __future__ import annotations

import math
import mmap
import os
import secrets
from pathlib import Path

import numpy as np
from tritium.protos.tritium.plugin.v1 import common_pb2

SHM_DIR = Path(os.environ.get("TRITIUM_SHM_DIR", "/dev/shm"))
# Offsets of tensors inside a segment are aligned to this many bytes (cache line, SIMD friendly).
ALIGNMENT = 64

_DTYPES: dict[int, np.dtype] = {
    common_pb2.DTYPE_F32: np.dtype("<f4"),
    common_pb2.DTYPE_F16: np.dtype("<f2"),
    common_pb2.DTYPE_I8: np.dtype("i1"),
    common_pb2.DTYPE_U8: np.dtype("u1"),
    common_pb2.DTYPE_I16: np.dtype("<i2"),
    common_pb2.DTYPE_I32: np.dtype("<i4"),
    common_pb2.DTYPE_I64: np.dtype("<i8"),
    # bfloat16 has no numpy dtype: carried as its raw 16 bits.
    common_pb2.DTYPE_BF16: np.dtype("<u2"),
}
_FROM_NUMPY = {v.str: k for k, v in _DTYPES.items() if k != common_pb2.DTYPE_BF16}


class TensorHandleError(ValueError):
    """A TensorHandle that does not describe a valid tensor (bad dtype, shape, size, bounds, segment)."""


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype of a DType enum value; TensorHandleError if unknown."""
    try:
        return _DTYPES[dtype]
    except KeyError:
        label = common_pb2.DType.Name(dtype) if dtype in common_pb2.DType.values() else dtype
        raise TensorHandleError(f"unsupported dtype {label}") from None


def proto_dtype(dtype: np.dtype | str) -> int:
    """The DType enum value of a numpy dtype; TensorHandleError if it has none."""
    key = np.dtype(dtype).newbyteorder("<").str if np.dtype(dtype).byteorder != "|" else np.dtype(dtype).str
    try:
        return _FROM_NUMPY[key]
    except KeyError:
        raise TensorHandleError(f"numpy dtype {np.dtype(dtype)} has no tritium.plugin.v1 DType") from None


def new_segment_name(tag: str = "seg") -> str:
    """A fresh segment name: `tritium-<pid>-<tag>-<random>`."""
    return f"tritium-{os.getpid()}-{tag}-{secrets.token_hex(6)}"


class Segment:
    """One mapped shared-memory segment. The creator owns it (unlinks it on close); others attach."""

    def __init__(self, name: str, size: int, *, create: bool, readonly: bool = False) -> None:
        if "/" in name or not name:
            raise TensorHandleError(f"segment name {name!r} must be a non-empty name without '/'")
        self.name = name
        self.path = SHM_DIR / name
        self.owner = create
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        if readonly and not create:
            flags = os.O_RDONLY
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            raise TensorHandleError(f"shared-memory segment {name!r} does not exist") from None
        try:
            if create:
                os.ftruncate(fd, size)
            actual = os.fstat(fd).st_size
            if actual < size:
                raise TensorHandleError(f"segment {name!r} is {actual} bytes, expected at least {size}")
            self.size = actual
            access = mmap.ACCESS_READ if readonly and not create else mmap.ACCESS_WRITE
            self._mmap = mmap.mmap(fd, actual, access=access) if actual else None
        finally:
            os.close(fd)
        self.readonly = readonly and not create

    @classmethod
    def create(cls, size: int, tag: str = "seg") -> Segment:
        """Create and map a new zero-filled segment of `size` bytes (the caller owns it)."""
        return cls(new_segment_name(tag), max(int(size), 1), create=True)

    @classmethod
    def attach(cls, name: str, size: int = 0, *, readonly: bool = False) -> Segment:
        """Map an existing segment; TensorHandleError if missing or smaller than `size`."""
        return cls(name, size, create=False, readonly=readonly)

    def message(self) -> common_pb2.SharedSegment:
        """The SharedSegment message describing this segment."""
        return common_pb2.SharedSegment(name=self.name, size=self.size)

    def view(self, offset: int, dtype: np.dtype | str, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy array over the segment's bytes [offset, offset + nbytes) — no copy."""
        dt = np.dtype(dtype)
        count = math.prod(shape)
        nbytes = count * dt.itemsize
        if offset < 0 or offset + nbytes > self.size:
            raise TensorHandleError(
                f"tensor of {nbytes} bytes at offset {offset} does not fit segment {self.name!r} "
                f"of {self.size} bytes"
            )
        if offset % dt.itemsize:
            raise TensorHandleError(f"offset {offset} is not aligned to the {dt} element size {dt.itemsize}")
        arr = np.frombuffer(self._mmap, dtype=dt, count=count, offset=offset).reshape(shape)
        return arr

    def handle(
        self, offset: int, dtype: np.dtype | str, shape: tuple[int, ...], *, pdtype: int | None = None
    ) -> common_pb2.TensorHandle:
        """The TensorHandle of the tensor at `offset` in this segment."""
        dt = np.dtype(dtype)
        count = math.prod(shape)
        return common_pb2.TensorHandle(
            segment=self.name,
            offset=offset,
            dtype=pdtype if pdtype is not None else proto_dtype(dt),
            shape=list(shape),
            nbytes=count * dt.itemsize,
        )

    def close(self) -> None:
        """Unmap; the owner also unlinks the segment. Views must not be used afterwards."""
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # numpy views still reference the buffer; the mapping goes away with them.
                pass
            self._mmap = None
        if self.owner:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Arena:
    """A bump allocator over one owned segment: tensors written once per call, reset per call."""

    def __init__(self, size: int, tag: str = "arena") -> None:
        self.segment = Segment.create(size, tag)
        self._top = 0

    def reset(self) -> None:
        """Forget every allocation (the next call overwrites them)."""
        self._top = 0

    def alloc(
        self, dtype: np.dtype | str, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, common_pb2.TensorHandle]:
        """Reserve an aligned tensor; returns its writable view and its handle."""
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize if shape else dt.itemsize
        offset = -(-self._top // ALIGNMENT) * ALIGNMENT
        if offset + nbytes > self.segment.size:
            raise TensorHandleError(
                f"arena {self.segment.name!r} of {self.segment.size} bytes cannot hold {nbytes} more bytes "
                f"at offset {offset}"
            )
        self._top = offset + nbytes
        return self.segment.view(offset, dt, shape), self.segment.handle(offset, dt, shape)

    def close(self) -> None:
        """Unlink the arena's segment."""
        self.segment.close()


class SegmentCache:
    """Segments attached by name, mapped once and reused across calls (the reader's side)."""

    def __init__(self, *, readonly: bool = True) -> None:
        self._segments: dict[str, Segment] = {}
        self._readonly = readonly

    def get(self, name: str) -> Segment:
        """The attached segment `name`, mapping it on first use."""
        seg = self._segments.get(name)
        if seg is None:
            seg = self._segments[name] = Segment.attach(name, readonly=self._readonly)
        return seg

    def drop(self, name: str) -> None:
        """Unmap one segment (e.g. after its creator died)."""
        seg = self._segments.pop(name, None)
        if seg is not None:
            seg.close()

    def close(self) -> None:
        """Unmap every segment."""
        for name in list(self._segments):
            self.drop(name)


def check_handle(
    handle: common_pb2.TensorHandle,
    *,
    dtype: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    what: str = "tensor",
) -> None:
    """Raise TensorHandleError unless the handle is self-consistent and, if given, has this dtype and
    shape (None entries in `shape` match any size)."""
    dt = numpy_dtype(handle.dtype)
    dims = tuple(handle.shape)
    if any(d < 0 for d in dims):
        raise TensorHandleError(f"{what}: negative dimension in shape {list(dims)}")
    count = math.prod(dims)  # Python ints: a hostile 2^63 dimension cannot wrap around
    if handle.nbytes != count * dt.itemsize:
        raise TensorHandleError(
            f"{what}: nbytes {handle.nbytes} does not match shape {list(handle.shape)} x {dt.itemsize} bytes"
        )
    if dtype is not None and handle.dtype != dtype:
        raise TensorHandleError(
            f"{what}: expected dtype {common_pb2.DType.Name(dtype)}, "
            f"found {common_pb2.DType.Name(handle.dtype)}"
        )
    if shape is not None:
        ok = len(shape) == len(dims) and all(e is None or e == f for e, f in zip(shape, dims, strict=True))
        if not ok:
            raise TensorHandleError(f"{what}: expected shape {list(shape)}, found {list(handle.shape)}")


def read_tensor(
    handle: common_pb2.TensorHandle,
    segments: SegmentCache | None = None,
    *,
    dtype: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    what: str = "tensor",
    copy: bool = True,
) -> np.ndarray:
    """The array a handle describes, validated (see check_handle); a copy unless copy=False."""
    check_handle(handle, dtype=dtype, shape=shape, what=what)
    dt = numpy_dtype(handle.dtype)
    shp = tuple(handle.shape)
    if not handle.segment:
        if len(handle.inline_data) != handle.nbytes:
            raise TensorHandleError(
                f"{what}: inline data is {len(handle.inline_data)} bytes, nbytes says {handle.nbytes}"
            )
        arr = np.frombuffer(handle.inline_data, dtype=dt).reshape(shp)
        return arr.copy() if copy else arr
    if segments is None:
        with Segment.attach(handle.segment, readonly=True) as seg:
            return seg.view(handle.offset, dt, shp).copy()
    try:
        arr = segments.get(handle.segment).view(handle.offset, dt, shp)
    except TensorHandleError as exc:
        raise TensorHandleError(f"{what}: {exc}") from None
    return arr.copy() if copy else arr


def inline_handle(array: np.ndarray) -> common_pb2.TensorHandle:
    """A TensorHandle carrying a small array inline (no shared memory)."""
    arr = np.ascontiguousarray(array)
    return common_pb2.TensorHandle(
        dtype=proto_dtype(arr.dtype), shape=list(arr.shape), nbytes=arr.nbytes, inline_data=arr.tobytes()
    )


def remove_segments_of(pid: int) -> list[str]:
    """Unlink every segment created by process `pid` (after it died); returns the names removed."""
    removed = []
    for path in SHM_DIR.glob(f"tritium-{pid}-*"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed
