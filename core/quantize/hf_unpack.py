"""Hugging Face packed BitNet weights (uint8 [out/4, in], 2-bit codes 0/1/2 = -1/0/+1) -> float32
ternary x scale, written straight into the caller's array (numba, parallel over packed rows), next to
its plain numpy twin. Row r + i*out/4 of the result is bits 2i..2i+1 of packed row r (transformers'
`unpack_weights`). Code 3 is not a ternary value: it is counted so the caller can name the byte."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def unpack_numba(packed: np.ndarray, scale: np.float32, out: np.ndarray) -> np.ndarray:
    """out[i*R + r, k] = (((packed[r, k] >> 2i) & 3) - 1) * scale; returns per packed row the number of
    code-3 fields (R = packed rows)."""
    R, K = packed.shape
    bad = np.zeros(R, np.int64)
    for r in numba.prange(R):
        n = 0
        for i in range(4):
            for k in range(K):
                c = (np.int32(packed[r, k]) >> (2 * i)) & 3
                n += c == 3
                out[i * R + r, k] = np.float32(c - 1) * scale
        bad[r] = n
    return bad


def unpack_numpy(packed: np.ndarray, scale: np.float32, out: np.ndarray) -> np.ndarray:
    """numpy twin of unpack_numba."""
    R = packed.shape[0]
    bad = np.zeros(R, np.int64)
    for i in range(4):
        codes = (packed >> (2 * i)) & 3
        bad += (codes == 3).sum(axis=1)
        out[i * R:(i + 1) * R] = (codes.astype(np.float32) - 1) * scale
    return bad


def first_code_3(packed: np.ndarray) -> tuple[list[int], int]:
    """([row, col] of the first packed byte holding code 3, its field i (bits 2i..2i+1))."""
    for i in range(4):
        hits = np.argwhere(((packed >> (2 * i)) & 3) == 3)
        if len(hits):
            return hits[0].tolist(), i
    raise ValueError("no code 3 in the packed array")
