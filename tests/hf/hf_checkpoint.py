"""Numpy-only helpers to write Hugging Face BitNet checkpoints (used by the tests and by
tests/fixtures/make_hf_fixtures.py): a safetensors writer that handles BF16, bf16 rounding, and
transformers' 2-bit row-block packing. Independent of the code under test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "U8": "u1", "I8": "i1", "I32": "<i4", "I64": "<i8"}


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even (as torch's .to(bfloat16))."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_round(x: np.ndarray) -> np.ndarray:
    """x rounded to the nearest bf16 value, as float32."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def safetensors_bytes(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict[str, str] | None = None,
                      header_override: dict | None = None) -> bytes:
    """A safetensors file. `tensors` maps name -> (dtype, array); BF16 arrays are float32 (rounded here)
    or uint16 bit patterns. `header_override` replaces the JSON header (to build lying files)."""
    header: dict = {}
    chunks = []
    offset = 0
    for name, (dtype, array) in tensors.items():
        if dtype == "BF16" and array.dtype != np.uint16:
            array = bf16_bits(array)
        data = np.ascontiguousarray(array, dtype=np.dtype(ST_DTYPES[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    if header_override is not None:
        header = header_override
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]],
                      metadata: dict[str, str] | None = None) -> None:
    Path(path).write_bytes(safetensors_bytes(tensors, metadata or {"format": "pt"}))


def pack_hf(ternary: np.ndarray) -> np.ndarray:
    """transformers' pack_weights: int8 T[out, in] -> uint8 [out/4, in]; row block i in bits 2i..2i+1."""
    out = ternary.shape[0]
    R = out // 4
    codes = (ternary.astype(np.int16) + 1).astype(np.uint8)
    packed = np.zeros((R,) + ternary.shape[1:], dtype=np.uint8)
    for i in range(4):
        packed |= codes[i * R:(i + 1) * R] << (2 * i)
    return packed


def unpack_hf(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_hf: uint8 [out/4, in] -> int8 [out, in]."""
    return np.concatenate([((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)], axis=0)


def read_safetensors_numpy(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Plain reader for test set-up (dtype name, array with BF16 as uint16); trusts the file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.dtype(ST_DTYPES[info["dtype"]]))
        out[name] = (info["dtype"], arr.reshape(info["shape"]).copy())
    return out
