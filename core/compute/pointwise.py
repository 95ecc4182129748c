"""RMSNorm and the gated FFN activation, as ggml computes them in float32 (numba + numpy twins).

RMSNorm (ggml_rms_norm then ggml_mul): the squares are float32, summed in float64;
``scale = 1/sqrtf(float32(sum/n) + eps)``; ``y = (x·scale)·w`` in float32.
Gated FFN (ggml swiglu / relu-sqr then mul): ``silu(g)·u = g/(1+expf(-g))·u`` or ``relu(g)²·u``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ACTIVATIONS = {"silu": 0, "relu2": 1}


def rmsnorm_numpy(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray) -> None:
    """out[T, n] = rmsnorm(x[T, n]) * w (float32 in, float32 out)."""
    sq = (x * x).astype(np.float32).astype(np.float64).sum(axis=1)
    mean = (sq / x.shape[1]).astype(np.float32)
    scale = (np.float32(1.0) / np.sqrt(mean + np.float32(eps))).astype(np.float32)
    out[...] = (x * scale[:, None]).astype(np.float32) * w


@njit(cache=True)
def rmsnorm_numba(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray) -> None:
    """Numba twin of `rmsnorm_numpy` (the float64 sum may be ordered differently: ~1e-16 relative)."""
    t, n = x.shape
    e = np.float32(eps)
    for i in range(t):
        s = 0.0
        for j in range(n):
            v = x[i, j] * x[i, j]
            s += np.float64(v)
        mean = np.float32(s / n)
        scale = np.float32(1.0) / np.sqrt(mean + e)
        for j in range(n):
            out[i, j] = (x[i, j] * scale) * w[j]


def gated_act_numpy(gate: np.ndarray, up: np.ndarray, act: int, out: np.ndarray) -> None:
    """out = act(gate) * up with act 0 = SiLU, 1 = ReLU² (float32)."""
    g = gate.astype(np.float32)
    if act == 0:
        a = g / (np.float32(1.0) + np.exp(-g))
    else:
        r = np.maximum(g, np.float32(0.0))
        a = r * r
    out[...] = a * up


@njit(cache=True)
def gated_act_numba(gate: np.ndarray, up: np.ndarray, act: int, out: np.ndarray) -> None:
    """Numba twin of `gated_act_numpy`."""
    t, n = gate.shape
    for i in range(t):
        for j in range(n):
            g = gate[i, j]
            if act == 0:
                a = g / (np.float32(1.0) + np.exp(-g))
            else:
                r = max(g, np.float32(0.0))
                a = r * r
            out[i, j] = a * up[i, j]
