"""Read safetensors files (single or sharded) as read-only numpy views of a memory map.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
UTF-8 JSON, then the data section. The JSON maps each tensor name to `{"dtype", "shape",
"data_offsets": [begin, end]}` (offsets relative to the data section) plus an optional
`"__metadata__"` object of strings.

Every claim of the header is checked before a byte of data is touched — header length against the file
size, dtype names, `prod(shape) * itemsize == end - begin`, offsets inside the data section, tensors
neither overlapping nor leaving holes (the same rule the `safetensors` library applies) — so a header
that lies ends in a `ModelFormatError` naming the file, tensor and field, never in a numpy traceback or a
huge allocation. BF16 has no numpy dtype: such tensors are returned as uint16 views (`bf16_to_float32`
widens them).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritium.core.errors import ModelFormatError

# The safetensors library refuses headers above 100 MB; so do we (a lying length must not allocate).
MAX_HEADER_BYTES = 100_000_000
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# dtype name -> numpy storage dtype (little-endian). Float8 types are exposed as raw bytes.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it; `begin`/`end` are absolute byte offsets in `file`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    file: Path

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise ModelFormatError(f"duplicate key {key!r} in JSON object")
        seen[key] = value
    return seen


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_header(
    header: bytes, data_size: int, file: Path
) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Validate a safetensors JSON header against a data section of `data_size` bytes.

    Returns the tensor entries (absolute offsets assume the header is `len(header)` bytes long and
    starts at byte 8) and the `__metadata__` strings. Raises ModelFormatError for anything else.
    """
    where = f"{file}: safetensors header"
    try:
        text = header.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_reject_duplicates)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelFormatError(f"{where} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{where}: expected a JSON object, found {type(doc).__name__}")

    metadata: dict[str, str] = {}
    raw_meta = doc.pop("__metadata__", None)
    if raw_meta is not None:
        if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
            raise ModelFormatError(
                f"{where}: __metadata__ must be an object of strings, found {raw_meta!r:.200}"
            )
        metadata = dict(raw_meta)

    data_start = 8 + len(header)
    entries: dict[str, TensorEntry] = {}
    for name, info in doc.items():
        at = f"{where}: tensor {name!r}"
        if not isinstance(info, dict):
            raise ModelFormatError(f"{at}: expected an object, found {info!r:.200}")
        dtype = info.get("dtype")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ModelFormatError(f"{at}: dtype {dtype!r:.100} is not one of {', '.join(DTYPES)}")
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ModelFormatError(
                f"{at}: shape must be a list of non-negative integers, found {shape!r:.200}"
            )
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise ModelFormatError(
                f"{at}: data_offsets must be [begin, end] integers, found {offsets!r:.200}"
            )
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise ModelFormatError(
                f"{at}: data_offsets [{begin}, {end}] fall outside the data section of {data_size} bytes"
            )
        numel = 1
        for d in shape:
            numel *= d
        expected = numel * DTYPES[dtype].itemsize
        if expected != end - begin:
            raise ModelFormatError(
                f"{at}: shape {shape} of {dtype} needs {expected} bytes but data_offsets "
                f"[{begin}, {end}] span {end - begin}"
            )
        entries[name] = TensorEntry(name, dtype, tuple(shape), data_start + begin, data_start + end, file)

    # Tensors must tile the data section exactly, as the safetensors library requires: an overlap means
    # two tensors share bytes, a hole or a short cover means the header and the data disagree.
    position = 0
    previous = "the start of the data section"
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        begin, end = entry.begin - data_start, entry.end - data_start
        if begin < position:
            raise ModelFormatError(
                f"{where}: tensor {entry.name!r} (bytes {begin}..{end}) overlaps {previous}, which ends at "
                f"{position}"
            )
        if begin > position:
            raise ModelFormatError(
                f"{where}: tensor {entry.name!r} starts at byte {begin} but {previous} ends at {position} "
                f"(a {begin - position}-byte hole)"
            )
        position = end
        previous = f"tensor {entry.name!r}"
    if position != data_size:
        raise ModelFormatError(
            f"{where}: the tensors cover {position} bytes but the data section has {data_size} bytes"
        )
    return entries, metadata


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Read and validate the header of one safetensors file (no data is read)."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if size < 8 or len(prefix) < 8:
                raise ModelFormatError(
                    f"{path}: {size} bytes is too short for a safetensors file (needs >= 8)"
                )
            (n,) = struct.unpack("<Q", prefix)
            if n < 2 or n > MAX_HEADER_BYTES:
                raise ModelFormatError(
                    f"{path}: safetensors header length {n} is outside 2..{MAX_HEADER_BYTES}"
                )
            if 8 + n > size:
                raise ModelFormatError(
                    f"{path}: safetensors header length {n} runs past the end of the {size}-byte file"
                )
            header = f.read(n)
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read safetensors file: {exc}") from None
    return parse_header(header, size - 8 - n, path)


class SafetensorsFile:
    """One validated safetensors file; `array(name)` returns a read-only view into its memory map."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries, self.metadata = read_header(self.path)
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def array(self, name: str) -> np.ndarray:
        """The tensor `name` in its storage dtype (BF16 as uint16), shaped as the header says."""
        entry = self.entries.get(name)
        if entry is None:
            raise ModelFormatError(f"{self.path}: no tensor {name!r}")
        dtype = DTYPES[entry.dtype]
        count = entry.nbytes // dtype.itemsize
        if count == 0:
            return np.zeros(entry.shape, dtype=dtype)
        view = np.frombuffer(self._mapped(), dtype=dtype, count=count, offset=entry.begin)
        return view.reshape(entry.shape)


@dataclass
class SafetensorsCheckpoint:
    """The tensors of a model folder: one `model.safetensors` or the shards its index names."""

    folder: Path
    files: list[SafetensorsFile]
    owner: dict[str, SafetensorsFile]  # tensor name -> the file that holds it
    index: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> dict[str, TensorEntry]:
        return {name: f.entries[name] for name, f in self.owner.items()}

    def __contains__(self, name: str) -> bool:
        return name in self.owner

    def entry(self, name: str) -> TensorEntry:
        f = self.owner.get(name)
        if f is None:
            raise ModelFormatError(f"{self.folder}: the checkpoint has no tensor {name!r}")
        return f.entries[name]

    def array(self, name: str) -> np.ndarray:
        """Read-only view of tensor `name` in its storage dtype (BF16 as uint16)."""
        f = self.owner.get(name)
        if f is None:
            raise ModelFormatError(f"{self.folder}: the checkpoint has no tensor {name!r}")
        return f.array(name)

    def float32(self, name: str) -> np.ndarray:
        """Tensor `name` as float32: a view for F32, a converted copy for BF16/F16/F64."""
        entry = self.entry(name)
        if entry.dtype not in FLOAT_DTYPES:
            raise ModelFormatError(f"{entry.file}: tensor {name!r} is {entry.dtype}, expected a float dtype")
        return to_float32(self.array(name), entry.dtype)


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen BF16 bit patterns (uint16) to float32 exactly (BF16 is the top half of a float32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """A storage-dtype array of a float safetensors dtype as float32 (a view when already F32)."""
    if dtype == "BF16":
        return bf16_to_float32(raw)
    if dtype == "F32":
        return raw
    return raw.astype(np.float32)


def _load_index(folder: Path, index_path: Path) -> dict[str, str]:
    try:
        doc = json.loads(index_path.read_text(encoding="utf-8"), object_pairs_hook=_reject_duplicates)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{index_path}: {exc}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{index_path}: not a readable JSON file: {exc}") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFormatError(f"{index_path}: expected a non-empty object 'weight_map' of tensor -> file")
    root = folder.resolve()
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise ModelFormatError(
                f"{index_path}: weight_map[{name!r}] must be a file name, found {shard!r:.100}"
            )
        target = (folder / shard).resolve()
        if root not in target.parents:
            raise ModelFormatError(
                f"{index_path}: weight_map[{name!r}] = {shard!r} points outside the model folder"
            )
    return weight_map


def open_checkpoint(folder: Path) -> SafetensorsCheckpoint:
    """Open the safetensors weights of a Hugging Face model folder and validate every header.

    A `model.safetensors.index.json` wins over `model.safetensors` (as in transformers). Each tensor the
    index names must exist in the shard it names; tensors of a shard that the index does not name are
    not part of the checkpoint.
    """
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    if index_path.is_file():
        weight_map = _load_index(folder, index_path)
        files: dict[str, SafetensorsFile] = {}
        owner: dict[str, SafetensorsFile] = {}
        for name, shard in weight_map.items():
            if shard not in files:
                shard_path = folder / shard
                if not shard_path.is_file():
                    raise ModelFormatError(f"{index_path}: shard {shard!r} (holding {name!r}) does not exist")
                files[shard] = SafetensorsFile(shard_path)
            if name not in files[shard].entries:
                raise ModelFormatError(
                    f"{index_path}: maps tensor {name!r} to {shard!r}, but that file has no such tensor"
                )
            owner[name] = files[shard]
        return SafetensorsCheckpoint(folder, list(files.values()), owner, index=index_path)
    single = folder / SINGLE_NAME
    if single.is_file():
        f = SafetensorsFile(single)
        return SafetensorsCheckpoint(folder, [f], dict.fromkeys(f.entries, f), metadata=f.metadata)
    raise ModelFormatError(f"{folder}: neither {SINGLE_NAME} nor {INDEX_NAME} found")
