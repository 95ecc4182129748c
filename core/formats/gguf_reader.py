"""A GGUF v2/v3 reader over a read-only memory map.

`read_gguf(path)` parses the header, the metadata (every value type, nested arrays included), the tensor
infos and the data offset, validating every count, length and offset against the bytes that remain in the
file *before* it allocates or slices anything. Tensor data is never copied: `GGUFFile.raw()` and
`GGUFFile.array()` return numpy views into the map. Anything malformed raises `ModelFormatError` naming the
file, the field or tensor, what was expected and what was found.

Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv times (string key, u32
value type, value); n_tensors times (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset);
padding to `general.alignment` (default 32); tensor data, each offset relative to that point.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritium.core.errors import ModelFormatError
from tritium.core.formats.ggml_types import FORK_I2_S, QK_I2_S, ForkContext, GGMLType, resolve_type

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8  # nested arrays deeper than this are corruption, not a model

# GGUF metadata value types: id -> (name, struct format or None for string/array)
VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("u8", "<B"), 1: ("i8", "<b"), 2: ("u16", "<H"), 3: ("i16", "<h"), 4: ("u32", "<I"),
    5: ("i32", "<i"), 6: ("f32", "<f"), 7: ("bool", "<B"), 8: ("string", None), 9: ("array", None),
    10: ("u64", "<Q"), 11: ("i64", "<q"), 12: ("f64", "<d"),
}
_NUMPY_OF_VALUE = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
                   10: "<u8", 11: "<i8", 12: "<f8"}
# Plain element types whose tensors `array()` returns as typed views; BF16 comes back as raw uint16.
_NUMPY_OF_TENSOR = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I8": "<i1", "I16": "<i2",
                    "I32": "<i4", "I64": "<i8"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor's header: ggml shape (ne0 = contiguous/input dim first), type and where its bytes lie."""

    name: str
    ne: tuple[int, ...]
    type: GGMLType
    offset: int  # relative to the start of the data section (as stored in the file)
    file_offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order (reversed ne)."""
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n


@dataclass
class GGUFFile:
    """A parsed GGUF file. Tensor accessors return views into the read-only memory map `mm`."""

    path: Path
    version: int
    alignment: int
    data_offset: int
    file_size: int
    metadata: dict[str, object]
    value_types: dict[str, str]  # key -> "u32", "string", "array[f32]", ...
    tensors: dict[str, GGUFTensor]  # in file order
    interpretation: list[str] = field(default_factory=list)
    mm: np.ndarray | None = None

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a 1-D uint8 view of the file (no copy)."""
        t = self._tensor(name)
        assert self.mm is not None
        return self.mm[t.file_offset:t.file_offset + t.nbytes]

    def array(self, name: str) -> np.ndarray:
        """A typed view in numpy order for plain types (F32/F16/BF16 as uint16/I*/F64); for block types
        a uint8 view [rows, bytes per row]; for I2_S the 1-D bytes (codes, scale, padding). Never copies."""
        t = self._tensor(name)
        raw = self.raw(name)
        dtype = _NUMPY_OF_TENSOR.get(t.type.name)
        if dtype is not None:
            return raw.view(dtype).reshape(t.shape)
        if t.type.name == "I2_S":  # packed codes of the whole tensor, then the scale tail
            return raw
        return raw.reshape(t.n_elements // t.ne[0], -1)

    def _tensor(self, name: str) -> GGUFTensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelFormatError(f"{self.path}: no tensor named '{name}'") from None


class _Cursor:
    """Sequential little-endian reads that check the remaining length first."""

    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf = buf
        self.size = len(buf)
        self.off = 0
        self.path = path

    def fail(self, what: str, expected: str, found: str) -> ModelFormatError:
        return ModelFormatError(
            f"{self.path}: {what} (at byte {self.off}): expected {expected}, found {found}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.off:
            raise self.fail(what, f"{n} more bytes", f"only {self.size - self.off} left in the file "
                            f"(truncated or corrupted)")

    def scalar(self, fmt: str, what: str) -> int | float:
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += n
        return v

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str, *, strict: bool) -> str:
        n = self.u64(f"{what} length")
        self.need(n, f"{what} ({n} bytes)")
        raw = bytes(self.buf[self.off:self.off + n])
        self.off += n
        try:
            # Keys and names must be UTF-8; values keep undecodable bytes (surrogateescape) so that a
            # tokenizer can recover them with .encode("utf-8", "surrogateescape").
            return raw.decode("utf-8", "strict" if strict else "surrogateescape")
        except UnicodeDecodeError as e:
            raise self.fail(what, "UTF-8 text", f"invalid byte at position {e.start}") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> object:
        if vtype not in VALUE_TYPES:
            raise self.fail(f"{what} value type", "a GGUF value type 0..12", str(vtype))
        if vtype == 8:
            return self.string(what, strict=False)
        if vtype == 9:
            return self.array(what, depth)
        v = self.scalar(VALUE_TYPES[vtype][1] or "", what)
        if vtype == 7:
            if v not in (0, 1):
                raise self.fail(what, "a bool (0 or 1)", str(v))
            return bool(v)
        return v

    def array(self, what: str, depth: int) -> list[object]:
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(what, f"arrays nested at most {MAX_ARRAY_DEPTH} deep", "deeper nesting")
        etype = self.u32(f"{what} element type")
        if etype not in VALUE_TYPES:
            raise self.fail(f"{what} element type", "a GGUF value type 0..12", str(etype))
        count = self.u64(f"{what} element count")
        # The smallest encoding of one element bounds the count by the bytes left, before any allocation.
        min_size = {8: 8, 9: 12}.get(etype) or struct.calcsize(VALUE_TYPES[etype][1] or "")
        if count > (self.size - self.off) // min_size:
            raise self.fail(f"{what} element count", f"at most {(self.size - self.off) // min_size} "
                            f"elements of type {VALUE_TYPES[etype][0]} in the bytes left", str(count))
        if etype in _NUMPY_OF_VALUE:
            arr = np.frombuffer(self.buf, dtype=_NUMPY_OF_VALUE[etype], count=count, offset=self.off)
            self.off += count * min_size
            if etype == 7:
                if count and int(arr.max()) > 1:
                    raise self.fail(what, "bools (0 or 1)", f"value {int(arr.max())}")
                return arr.astype(bool).tolist()
            return arr.tolist()
        if etype == 8:
            return self.string_array(what, count)
        return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(count)]

    def string_array(self, what: str, count: int) -> list[str]:
        """`count` strings (vocabularies have 10^5 of them: one tight loop, errors built only on failure)."""
        out: list[str] = []
        buf, off, size = self.buf, self.off, self.size
        read_u64 = struct.Struct("<Q").unpack_from
        for i in range(count):
            if size - off < 8:
                self.off = off
                raise self.fail(f"{what}[{i}] length", "8 more bytes", f"only {size - off} left in the file")
            n = read_u64(buf, off)[0]
            off += 8
            if n > size - off:
                self.off = off
                raise self.fail(f"{what}[{i}]", f"{n} more bytes", f"only {size - off} left in the file "
                                f"(truncated or corrupted)")
            out.append(str(buf[off:off + n], "utf-8", "surrogateescape"))
            off += n
        self.off = off
        return out


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse a GGUF v2/v3 file over a read-only memory map; raise ModelFormatError on any bad input."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read the file ({e.strerror})") from None
    if size < 24:
        raise ModelFormatError(f"{path}: expected a GGUF file (at least 24 header bytes), found {size} bytes")
    try:
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"{path}: cannot memory-map the file ({e})") from None
    cur = _Cursor(memoryview(mm), path)

    magic = bytes(cur.buf[:4])
    if magic != GGUF_MAGIC:
        raise ModelFormatError(f"{path}: bad magic: expected b'GGUF', found {magic!r} (not a GGUF file)")
    cur.off = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise ModelFormatError(f"{path}: version field: expected a little-endian GGUF, found a "
                                   f"big-endian file (version {swapped}), which Tritium does not read")
        raise ModelFormatError(f"{path}: unsupported GGUF version: expected 2 or 3, found {version}")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata key/value count")
    # A key/value needs >= 8+1+4 bytes, a tensor info >= 8+1+4+8+4+8: reject absurd counts up front.
    if n_kv > (size - cur.off) // 13:
        raise cur.fail("metadata key/value count", f"at most {(size - cur.off) // 13} for this file size",
                       str(n_kv))
    if n_tensors > (size - cur.off) // 33:
        raise cur.fail("tensor count", f"at most {(size - cur.off) // 33} for this file size", str(n_tensors))

    metadata: dict[str, object] = {}
    value_types: dict[str, str] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}", strict=True)
        if key in metadata:
            raise cur.fail(f"metadata key #{i}", "unique keys", f"a second '{key}'")
        vtype = cur.u32(f"metadata '{key}' value type")
        if vtype not in VALUE_TYPES:
            raise cur.fail(f"metadata '{key}' value type", "a GGUF value type 0..12", str(vtype))
        if vtype == 9:
            save = cur.off
            etype = cur.u32(f"metadata '{key}' element type")
            cur.off = save
            ename = VALUE_TYPES.get(etype, (str(etype), None))[0]
            value_types[key] = f"array[{ename}]"
        else:
            value_types[key] = VALUE_TYPES[vtype][0]
        metadata[key] = cur.value(vtype, f"metadata '{key}'")

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        alignment = metadata["general.alignment"]  # type: ignore[assignment]
        if value_types["general.alignment"] != "u32" or alignment <= 0 or alignment & (alignment - 1):
            raise ModelFormatError(f"{path}: metadata 'general.alignment': expected a u32 power of two, "
                                   f"found {value_types['general.alignment']} {alignment!r}")

    raw_infos = []
    for i in range(n_tensors):
        name = cur.string(f"tensor info #{i} name", strict=True)
        n_dims = cur.u32(f"tensor '{name}' dimension count")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor '{name}' dimension count", f"1..{MAX_DIMS}", str(n_dims))
        ne = tuple(cur.u64(f"tensor '{name}' ne[{d}]") for d in range(n_dims))
        type_id = cur.u32(f"tensor '{name}' type")
        offset = cur.u64(f"tensor '{name}' offset")
        raw_infos.append((name, ne, type_id, offset))

    data_offset = -(-cur.off // alignment) * alignment
    if data_offset > size:
        raise ModelFormatError(f"{path}: tensor data section: expected it to start at byte {data_offset}, "
                               f"found the file ends at byte {size} (truncated)")

    arch = metadata.get("general.architecture")
    ftype = metadata.get("general.file_type")
    ctx = ForkContext(arch if isinstance(arch, str) else None, ftype if isinstance(ftype, int) else None,
                      any(t == FORK_I2_S for _, _, t, _ in raw_infos),
                      tritium_tl1=metadata.get("tritium.tl1.layout") == "tritium-tl1-v1")
    tensors: dict[str, GGUFTensor] = {}
    for name, ne, type_id, offset in raw_infos:
        where = f"{path}: tensor '{name}'"
        if name in tensors:
            raise ModelFormatError(f"{where}: expected unique tensor names, found a second '{name}'")
        if any(d == 0 for d in ne):
            raise ModelFormatError(f"{where}: expected every dimension >= 1, found ne={list(ne)}")
        n = 1
        for d in ne:
            n *= d
        if n > size * 8:  # no supported type packs more than 8 values per byte
            raise ModelFormatError(f"{where}: shape ne={list(ne)} has {n} elements, more than a "
                                   f"{size}-byte file can hold")
        gtype = resolve_type(type_id, ctx, where=where)
        if ne[0] % gtype.block_size:
            raise ModelFormatError(f"{where}: type {gtype.name} needs ne0 to be a multiple of "
                                   f"{gtype.block_size}, found ne0={ne[0]}")
        if gtype.name == "I2_S" and ne[0] % QK_I2_S:
            raise ModelFormatError(f"{where}: I2_S (x86 layout) needs ne0 (the input dim) to be a multiple "
                                   f"of {QK_I2_S}, found ne0={ne[0]}")
        nbytes = gtype.nbytes(ne)
        if offset % alignment:
            raise ModelFormatError(f"{where}: offset {offset}: expected a multiple of the alignment "
                                   f"{alignment}")
        start = data_offset + offset
        if start > size or nbytes > size - start:
            raise ModelFormatError(f"{where}: data ({gtype.name} {list(ne)}: {nbytes} bytes at byte "
                                   f"{start}) expected inside the file, found it ends at byte {size} "
                                   f"(truncated, or a corrupted offset/shape)")
        tensors[name] = GGUFTensor(name, ne, gtype, offset, start, nbytes)

    ordered = sorted(tensors.values(), key=lambda t: t.file_offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.file_offset + a.nbytes > b.file_offset:
            raise ModelFormatError(
                f"{path}: tensor '{a.name}' ({a.type.name}, {a.nbytes} bytes at data offset {a.offset}) "
                f"overlaps tensor '{b.name}' at data offset {b.offset}: expected disjoint tensor data")

    align_src = "general.alignment" if "general.alignment" in metadata else "default"
    interp = [f"GGUF v{version}, little-endian, {len(tensors)} tensors, {len(metadata)} metadata keys; "
              f"alignment {alignment} ({align_src}), tensor data at byte {data_offset}"]
    by_type: dict[str, list[str]] = {}
    for t in tensors.values():
        if t.type.interpretation:
            by_type.setdefault(f"type id {t.type.type_id} read as {t.type.interpretation}", []).append(t.name)
    for line, names in by_type.items():
        interp.append(f"{line}: {len(names)} tensor(s)")
    return GGUFFile(path, version, alignment, data_offset, size, metadata, value_types, tensors, interp, mm)
