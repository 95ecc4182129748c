"""Payload bytes -> float32 values, for Dequantize (plain numpy; not on the conversion path)."""

from __future__ import annotations

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from .tl1_kernels import TL1_BK, TL1_BM


def _i2s(raw: np.ndarray, M: int, K: int) -> np.ndarray:
    n = M * K // 4
    packed = raw[:n].reshape(-1, 32)
    codes = np.concatenate([(packed >> s) & 3 for s in (6, 4, 2, 0)], axis=1).reshape(M, K)
    return (codes.astype(np.float32) - 1) * raw[n : n + 4].copy().view("<f4")[0]


def _tl1(raw: np.ndarray, M: int, K: int) -> np.ndarray:
    n = M * K // 4
    byte = raw[:n].reshape(M // TL1_BM, K // TL1_BK, TL1_BM, 8).transpose(0, 2, 1, 3).reshape(M, K // 4)
    idx = np.empty((M, K // 2), np.int16)
    idx[:, 0::2], idx[:, 1::2] = byte >> 4, byte & 15
    t = np.empty((M, K), np.float32)
    t[:, 0::2], t[:, 1::2] = idx // 3 - 1, idx % 3 - 1
    return t * raw[n : n + 4].copy().view("<f4")[0]


def dequantize_payload(type_name: str, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values [shape] of a payload of `type_name` (I2_S, TL1, TQ1_0, TQ2_0, F16, Q8_0)."""
    if len(shape) != 2:
        raise ValueError(f"expected a matrix shape, found {list(shape)}")
    M, K = shape
    if type_name == "I2_S":
        return _i2s(raw, M, K)
    if type_name == "TL1":
        return _tl1(raw, M, K)
    if type_name == "F16":
        return raw.view("<f2").astype(np.float32).reshape(shape)
    q = gguf_dequantize(raw.reshape(M, -1), GGMLQuantizationType[type_name])
    return np.asarray(q, dtype=np.float32).reshape(shape)
