"""Float weights -> ternary values x scale, the way BitNet b1.58 trains them (absmean), numba + numpy.

transformers' `WeightQuant` (online master weights), in float32: `sc = 1 / clamp(mean|W|, 1e-5)`,
`T = clamp(round_half_even(W * sc), -1, 1)`, dequant scale `1 / sc`. The mean is accumulated in float64
and rounded once to float32 (as Tritium's HF loader does), so a quantized file and the HF checkpoint
served directly by Tritium use the same ternary values and scale.

Absmean is not idempotent in its scale: re-quantizing `T * s` gives back T but with scale
`s * nonzero_fraction`. So a tensor that is already "ternary x one scale" (an HF packed checkpoint, a
GGUF F16 file written by llama.cpp's converter) is detected and kept exactly: T = sign(W), s = max|W|.

`per_channel` makes all of this per output row (one scale per row) instead of per tensor.
"""

from __future__ import annotations

import numba
import numpy as np

ABSMEAN_FLOOR = np.float32(1e-5)  # transformers' clamp(min=1e-5)


_ABS_BITS = np.uint32(0x7FFFFFFF)
_ONE = np.uint32(1)


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def _row_stats(x: np.ndarray, bits: np.ndarray, sums: np.ndarray, amax: np.ndarray, amin: np.ndarray) -> None:
    # max and min of |x| on the float32 bit patterns (sign cleared): for non-negative floats the integer
    # order is the float order, and integer min/max reductions vectorize without fast-math (a float
    # min/max would need no-nan). `u - 1` wraps 0 to the largest uint32, so one min skips the zeros.
    # Inf and nan have the largest patterns of all. The float64 sum vectorizes with reassociation.
    M, K = x.shape
    for m in numba.prange(M):
        s = 0.0
        hi = np.uint32(0)
        lo = np.uint32(0xFFFFFFFF)
        for k in range(K):
            u = bits[m, k] & _ABS_BITS
            hi = max(hi, u)
            lo = min(lo, u - _ONE)
            s += abs(np.float64(x[m, k]))
        sums[m] = s
        amax[m] = hi
        amin[m] = lo + _ONE


def row_stats_numba(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of float32 x [M, K] (C-contiguous), in one read: (sum|x| float64, max|x| float32, min of
    the nonzero |x| float32, +inf for an all-zero row). A row is ternary x one magnitude iff its nonzero
    min equals its max (or it is all zero); its sum is not finite iff it holds an inf or a nan. The sum
    is float64, vectorized (in another order than numpy's, equal to ~1e-16 relative: the float32 mean is
    the one Tritium's HF loader computes)."""
    M = x.shape[0]
    sums = np.empty(M, np.float64)
    amax = np.empty(M, np.uint32)
    amin = np.empty(M, np.uint32)
    _row_stats(x, x.view(np.uint32), sums, amax, amin)
    amin[amin == 0] = 0x7F800000  # all-zero row: +inf
    return sums, amax.view(np.float32), amin.view(np.float32)


def row_stats_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy twin of row_stats_numba."""
    a = np.abs(x)
    amin = np.where(a == 0, np.float32(np.inf), a).min(axis=1, initial=np.inf).astype(np.float32)
    return a.sum(axis=1, dtype=np.float64), a.max(axis=1, initial=0).astype(np.float32), amin


def ternarize_numpy(
    x: np.ndarray, inv_scale: np.ndarray, scale: np.ndarray, stored_scale: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """out = clamp(rint(x * inv_scale[row]), -1, 1) * scale[row] (float32 [M, K]); returns per row the
    sum of squared errors (float64) of T * stored_scale[row] against x. The reference the fused kernels
    of ternary_encode.py are tested against (they never materialize `out`)."""
    t = np.clip(np.rint(x * inv_scale[:, None]), -1, 1).astype(np.float32)
    out[...] = t * scale[:, None]
    d = x.astype(np.float64) - (t * stored_scale[:, None]).astype(np.float64)
    return (d * d).sum(axis=1)


def ternary_scales(
    x: np.ndarray, *, per_channel: bool, stats: tuple | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(inv_scale [M], scale [M], already_ternary) for float32 x [M, K].

    already_ternary: every value (per tensor, or per row with per_channel) is 0 or +-one magnitude; then
    scale = that magnitude and inv_scale = 1/scale, so T = sign(x) and the scale is kept exactly.
    Otherwise absmean as transformers computes it.
    """
    M, K = x.shape
    sums, amax, amin = stats if stats is not None else row_stats_numba(x)
    ternary = (amax == 0) | (amin == amax)
    if per_channel:
        if ternary.all():
            scale = amax.astype(np.float32)
            inv = np.divide(np.float32(1.0), scale, out=np.zeros(M, np.float32), where=scale != 0)
            return inv, scale, True
        mean = (sums / K).astype(np.float32)
        sc = np.float32(1.0) / np.maximum(mean, ABSMEAN_FLOOR)
        return sc.astype(np.float32), (np.float32(1.0) / sc).astype(np.float32), False
    nonzero_max = amax[amax != 0]
    one_magnitude = nonzero_max.size == 0 or bool((nonzero_max == nonzero_max[0]).all())
    if ternary.all() and one_magnitude:
        s = np.float32(nonzero_max[0]) if nonzero_max.size else np.float32(0.0)
        inv = np.float32(1.0) / s if s != 0 else np.float32(0.0)
        return np.full(M, inv, np.float32), np.full(M, s, np.float32), True
    mean = np.float32(float(sums.sum()) / (M * K))
    sc = np.float32(1.0) / max(mean, ABSMEAN_FLOOR)
    return np.full(M, sc, np.float32), np.full(M, np.float32(1.0) / sc, np.float32), False
