"""Tensor encoders for writing GGUF files: float or ternary matrices -> the bytes of one ggml type.

Upstream types use `gguf.quants` (byte-exact with ggml's reference quantizers; the tests check TQ1_0 and
TQ2_0 against the layouts in FORMATS.md). I2_S, which PyPI gguf does not know, follows bitnet.cpp's x86
`quantize_i2_s` (ggml-bitnet-mad.cpp): codes 0/1/2 for -1/0/+1 in 128-value blocks of 32 bytes, then the
float32 per-tensor scale and 28 zero bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import quantize
from tritium.core.formats.ggml_types import I2_S_TAIL, QK_I2_S


@dataclass(frozen=True)
class TernaryMatrix:
    """W = values * scale: int8 `values` [out, in] in {-1, 0, +1} and one float scale per tensor."""

    values: np.ndarray
    scale: float

    def to_float(self) -> np.ndarray:
        return self.values.astype(np.float32) * np.float32(self.scale)


def encode_i2s_codes(values: np.ndarray, scale: float) -> np.ndarray:
    """int8 ternary [M, K] (K % 128 == 0) + scale -> x86 I2_S bytes (K*M/4 + 32)."""
    M, K = values.shape
    if K % QK_I2_S:
        raise ValueError(f"I2_S needs the input dim to be a multiple of {QK_I2_S}, got {K}")
    c = (values.astype(np.int16) + 1).astype(np.uint8).reshape(-1, 4, 32)  # 128-value blocks, 4 planes
    packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
    tail = np.zeros(I2_S_TAIL, dtype=np.uint8)
    tail[:4] = np.frombuffer(np.float32(scale).tobytes(), dtype=np.uint8)
    return np.concatenate([packed.reshape(-1), tail])


def encode_i2s(w: np.ndarray | TernaryMatrix) -> np.ndarray:
    """I2_S bytes of a ternary matrix, or of a float matrix quantized as bitnet.cpp's `quantize_i2_s`
    does (scale = max|w|; |w| < 1e-6 -> 0, otherwise the sign)."""
    if isinstance(w, TernaryMatrix):
        return encode_i2s_codes(w.values, w.scale)
    w = np.asarray(w, dtype=np.float32)
    scale = float(np.abs(w).max()) if w.size else 0.0
    values = np.where(np.abs(w) < 1e-6, 0, np.where(w > 0, 1, -1)).astype(np.int8)
    return encode_i2s_codes(values, scale)


def encode_tensor(w: np.ndarray | TernaryMatrix, type_name: str) -> np.ndarray:
    """The raw bytes (uint8, 1-D) of `w` stored as ggml type `type_name` (F32, F16, BF16, Q8_0, TQ1_0,
    TQ2_0, I2_S). A TernaryMatrix is stored as values*scale (so TQ blocks get d = scale)."""
    if type_name == "I2_S":
        return encode_i2s(w)
    x = w.to_float() if isinstance(w, TernaryMatrix) else np.asarray(w, dtype=np.float32)
    out = quantize(np.ascontiguousarray(x, dtype=np.float32), GGMLQuantizationType[type_name])
    return np.ascontiguousarray(out).reshape(-1).view(np.uint8)
