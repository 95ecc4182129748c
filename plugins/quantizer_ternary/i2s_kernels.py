"""bitnet.cpp I2_S encoder, x86 layout (ggml-bitnet-mad.cpp `quantize_i2_s`, ACT_PARALLEL), numba + numpy.

From float32 x [M, K] (K % 128 == 0): the per-tensor scale is max|x| (computed in double, stored as
float32); code 1 for |x| < 1e-6, else 2 for x > 0 and 0 for x < 0 (codes 0/1/2 = -1/0/+1). The tensor
is one flat row-major array cut into 128-value blocks of 32 bytes; byte j of a block holds values j,
32+j, 64+j, 96+j in bits 7-6, 5-4, 3-2, 1-0. Then the float32 scale and 28 padding bytes (zero here;
bitnet.cpp leaves them uninitialised): K*M/4 + 32 bytes in all.
"""

from __future__ import annotations

import numba
import numpy as np

QK_I2_S = 128
I2_S_TAIL = 32


@numba.njit(cache=True, parallel=True)
def _i2s_pack(x: np.ndarray, out: np.ndarray) -> None:
    """out[block, 32] = packed codes of x viewed as [n_blocks, 128]."""
    nblk = x.shape[0]
    for b in numba.prange(nblk):
        for j in range(32):
            byte = 0
            for p in range(4):
                v = x[b, 32 * p + j]
                c = 1 if abs(v) < 1e-6 else (2 if v > 0 else 0)
                byte |= c << (6 - 2 * p)
            out[b, j] = byte


@numba.njit(cache=True)
def _absmax(x: np.ndarray) -> np.float64:
    m = 0.0
    for v in x:
        a = abs(np.float64(v))
        if a > m:
            m = a
    return m


def _check(x: np.ndarray) -> tuple[int, int]:
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"expected float32 [rows, K], got {x.dtype} {list(x.shape)}")
    if x.shape[1] % QK_I2_S:
        raise ValueError(f"I2_S needs the row length to be a multiple of {QK_I2_S}, got {x.shape[1]}")
    return x.shape


def _tail(scale: float) -> np.ndarray:
    tail = np.zeros(I2_S_TAIL, np.uint8)
    tail[:4] = np.frombuffer(np.float32(scale).tobytes(), np.uint8)
    return tail


def encode_i2s_numba(x: np.ndarray) -> np.ndarray:
    """I2_S bytes (uint8, 1-D, M*K/4 + 32) of float32 x [M, K]."""
    M, K = _check(x)
    flat = np.ascontiguousarray(x).reshape(-1, QK_I2_S)
    out = np.empty(M * K // 4 + I2_S_TAIL, np.uint8)
    _i2s_pack(flat, out[: M * K // 4].reshape(-1, 32))
    out[M * K // 4 :] = _tail(float(_absmax(flat.reshape(-1))))
    return out


def encode_i2s_numpy(x: np.ndarray) -> np.ndarray:
    """numpy twin of encode_i2s_numba."""
    M, K = _check(x)
    scale = float(np.abs(x.astype(np.float64)).max()) if x.size else 0.0
    c = np.where(np.abs(x) < 1e-6, 1, np.where(x > 0, 2, 0)).astype(np.uint8).reshape(-1, 4, 32)
    packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
    return np.concatenate([packed.reshape(-1), _tail(scale)])
