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


@numba.njit(cache=True, parallel=True)
def row_stats_numba(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of float32 x [M, K]: (sum|x| float64, max|x| float32, 1 if every value is 0 or +-max|x|)."""
    M, K = x.shape
    sums = np.zeros(M, np.float64)
    amax = np.zeros(M, np.float32)
    ternary = np.ones(M, np.uint8)
    for m in numba.prange(M):
        s = 0.0
        a = np.float32(0.0)
        for k in range(K):
            v = abs(x[m, k])
            s += v
            if v > a:
                a = v
        sums[m] = s
        amax[m] = a
        for k in range(K):
            v = abs(x[m, k])
            if v != 0 and v != a:
                ternary[m] = 0
                break
    return sums, amax, ternary


def row_stats_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy twin of row_stats_numba."""
    a = np.abs(x)
    amax = a.max(axis=1).astype(np.float32)
    ternary = ((a == 0) | (a == amax[:, None])).all(axis=1).astype(np.uint8)
    return a.sum(axis=1, dtype=np.float64), amax, ternary


@numba.njit(cache=True, parallel=True)
def ternarize_numba(
    x: np.ndarray, inv_scale: np.ndarray, scale: np.ndarray, stored_scale: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """out = clamp(rint(x * inv_scale[row]), -1, 1) * scale[row] (float32 [M, K]); returns per row the
    sum of squared errors (float64) of T * stored_scale[row] against x (stored_scale: the scale as the
    target format keeps it, e.g. fp16-rounded for TQ types)."""
    M, K = x.shape
    sse = np.zeros(M, np.float64)
    for m in numba.prange(M):
        inv = inv_scale[m]
        s = scale[m]
        st = stored_scale[m]
        e = 0.0
        for k in range(K):
            t = np.rint(x[m, k] * inv)
            if t > 1:
                t = np.float32(1.0)
            elif t < -1:
                t = np.float32(-1.0)
            out[m, k] = t * s
            d = np.float64(x[m, k]) - np.float64(t * st)
            e += d * d
        sse[m] = e
    return sse


def ternarize_numpy(
    x: np.ndarray, inv_scale: np.ndarray, scale: np.ndarray, stored_scale: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """numpy twin of ternarize_numba."""
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
    sums, amax, ternary = stats if stats is not None else row_stats_numba(x)
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
