"""Tritium TL1 encoder (numba + numpy twin): bitnet.cpp's pair-index code in Tritium's own fixed tiling.

See README.md in this package for the full layout. In short, for float32 x [M, K] (M % 16 == 0,
K % 32 == 0) already ternary x one per-tensor scale:

* scale = max|x| (float32); t = sign(x) with |x| < 1e-6 -> 0 (as I2_S does).
* Consecutive pairs (t[2p], t[2p+1]) along K become the index 3*t0 + t1 + 4 in 0..8 (bitnet.cpp TL1).
* Tiles of 16 rows x 32 values (16 pairs): tile (i, j) covers rows 16i..16i+15 and values
  32j..32j+31; tiles are stored row-of-tiles major ([M/16][K/32]), each tile as 16 rows x 8 bytes, byte
  b of a tile row holding pair 2b in its high nibble and pair 2b+1 in its low nibble.
* Then the float32 scale and 28 zero bytes: M*K/4 + 32 bytes, the same size as I2_S.
"""

from __future__ import annotations

import numba
import numpy as np

TL1_BM = 16  # rows per tile
TL1_BK = 32  # values per tile row (16 pair indices, 8 bytes)
TL1_TAIL = 32
LAYOUT_NAME = "tritium-tl1-v1"


@numba.njit(inline="always")
def _trit(v: np.float32) -> np.int64:
    if abs(v) < 1e-6:
        return 0
    return 1 if v > 0 else -1


@numba.njit(cache=True, parallel=True)
def _tl1_pack(x: np.ndarray, out: np.ndarray) -> None:
    """out[M/16, K/32, 16, 8] = tiles of pair-index nibbles of x [M, K]."""
    M, K = x.shape
    for ti in numba.prange(M // TL1_BM):
        for tj in range(K // TL1_BK):
            for r in range(TL1_BM):
                m = ti * TL1_BM + r
                for b in range(TL1_BK // 4):
                    k = tj * TL1_BK + 4 * b
                    hi = 3 * _trit(x[m, k]) + _trit(x[m, k + 1]) + 4
                    lo = 3 * _trit(x[m, k + 2]) + _trit(x[m, k + 3]) + 4
                    out[ti, tj, r, b] = (hi << 4) | lo


def _check(x: np.ndarray) -> tuple[int, int]:
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"expected float32 [rows, K], got {x.dtype} {list(x.shape)}")
    M, K = x.shape
    if M % TL1_BM or K % TL1_BK:
        raise ValueError(f"TL1 needs rows % {TL1_BM} == 0 and row length % {TL1_BK} == 0, got [{M}, {K}]")
    return M, K


def _tail(x: np.ndarray) -> np.ndarray:
    tail = np.zeros(TL1_TAIL, np.uint8)
    scale = np.float32(np.abs(x).max()) if x.size else np.float32(0.0)
    tail[:4] = np.frombuffer(scale.tobytes(), np.uint8)
    return tail


def encode_tl1_numba(x: np.ndarray) -> np.ndarray:
    """TL1 bytes (uint8, 1-D, M*K/4 + 32) of float32 x [M, K]."""
    M, K = _check(x)
    out = np.empty(M * K // 4 + TL1_TAIL, np.uint8)
    _tl1_pack(np.ascontiguousarray(x), out[: M * K // 4].reshape(M // TL1_BM, K // TL1_BK, TL1_BM, 8))
    out[M * K // 4 :] = _tail(x)
    return out


def encode_tl1_numpy(x: np.ndarray) -> np.ndarray:
    """numpy twin of encode_tl1_numba."""
    M, K = _check(x)
    t = np.where(np.abs(x) < 1e-6, 0, np.sign(x)).astype(np.int16)
    idx = (3 * t[:, 0::2] + t[:, 1::2] + 4).astype(np.uint8)  # [M, K/2]
    byte = (idx[:, 0::2] << 4) | idx[:, 1::2]  # [M, K/4]
    tiles = byte.reshape(M // TL1_BM, TL1_BM, K // TL1_BK, 8).transpose(0, 2, 1, 3)
    return np.concatenate([np.ascontiguousarray(tiles).reshape(-1), _tail(x)])
