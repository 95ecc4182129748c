"""float32 -> IEEE float16 bytes with the reconstruction error, in one pass (numba), next to its numpy twin.

numba has no float16 type, so the conversion works on bit patterns: round to nearest, ties to even, with
float16 subnormals, overflow to inf, and signed zeros, exactly as numpy's `astype(np.float16)`
(npy_floatbits_to_halfbits). Non-finite inputs are counted, not converted (the engine refuses them).
The squared error against the float16 value is summed per row in float64; the value is looked up in a
65536-entry float16 -> float32 table.
"""

from __future__ import annotations

import numba
import numpy as np

HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@numba.njit(inline="always")
def _half_bits(f: np.int64) -> np.int64:
    """float16 bits of the float32 with bits f (as a non-negative int64; f finite or not)."""
    sign = (f >> 16) & 0x8000
    exp = f & 0x7F800000
    if exp >= 0x47800000:  # |x| >= 65536 or inf/nan: inf (numpy's overflow result)
        return sign | 0x7C00
    if exp <= 0x38000000:  # a float16 subnormal or zero
        if exp < 0x33000000:  # below half of the smallest subnormal: signed zero
            return sign
        drop = 126 - (exp >> 23)  # 14..24 bits shifted out
        sig = 0x00800000 | (f & 0x007FFFFF)
        h = sig >> drop
        lost = sig & ((1 << drop) - 1)
        half = 1 << (drop - 1)
        return sign | (h + ((lost > half) | ((lost == half) & (h & 1))))
    h = ((exp - 0x38000000) >> 13) | ((f & 0x007FFFFF) >> 13)
    lost = f & 0x1FFF
    # round to nearest even; a carry out of the significand bumps the exponent (up to inf): still right
    return sign | (h + ((lost > 0x1000) | ((lost == 0x1000) & (h & 1))))


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def f16_numba(x: np.ndarray, bits: np.ndarray, table: np.ndarray, out: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """out[m, k] = float16 bits of x[m, k] (bits: x viewed as uint32; out: uint16 [M, K]); returns per row
    (sum of squared errors float64, count of non-finite inputs)."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    bad = np.zeros(M, np.int64)
    for m in numba.prange(M):
        e = 0.0
        n = 0
        for k in range(K):
            u = np.int64(bits[m, k])
            n += (u & 0x7F800000) == 0x7F800000
            h = _half_bits(u)
            out[m, k] = h
            d = np.float64(x[m, k]) - np.float64(table[h])
            e += d * d
        sse[m] = e
        bad[m] = n
    return sse, bad


def f16_numpy(x: np.ndarray, bits: np.ndarray, table: np.ndarray, out: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of f16_numba."""
    h = x.astype(np.float16)
    out[...] = h.view(np.uint16)
    d = x.astype(np.float64) - h.astype(np.float64)
    return (d * d).sum(axis=1), (~np.isfinite(x)).sum(axis=1).astype(np.int64)


def encode_f16(x: np.ndarray, *, impl: str = "numba", out: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F16 payload uint8 1-D, sse [M] float64, non-finite count [M]) of float32 x [M, K] (C-contiguous);
    `out` (uint8, 1-D, 2*M*K long) receives the payload instead of a new array."""
    payload = np.empty(2 * x.size, np.uint8) if out is None else out
    if payload.shape != (2 * x.size,) or payload.dtype != np.uint8:
        raise ValueError(f"F16 payload of {list(x.shape)} needs uint8 [{2 * x.size}], got {payload.dtype} "
                         f"{list(payload.shape)}")
    fn = f16_numba if impl == "numba" else f16_numpy
    sse, bad = fn(x, x.view(np.uint32), HALF_TO_FLOAT, payload.view(np.uint16).reshape(x.shape))
    return payload, sse, bad
