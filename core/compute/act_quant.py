"""Activation quantizers: float32 activations -> int8 plus scales, exactly as each peer does it.

Agreement with a peer comes from reproducing its rounding bit for bit, so every scheme here is the
peer's arithmetic, in float32 where the peer uses float32:

* ``q8_k`` (llama.cpp ``quantize_row_q8_K_ref``, the vec_dot type of TQ1_0/TQ2_0): per block of 256
  values along K, ``max`` is the value with the largest |x| (the first one on ties, keeping its sign),
  ``iscale = -127/max``, ``q = min(127, nearest_int(iscale*x))`` where ``nearest_int`` is the
  1.5*2^23 trick, i.e. round half to even in float32; ``d = 1/iscale``; an all-zero block gets d = 0.
  The value is ``q*d`` (the negative iscale makes d carry the sign of max).
* ``i8_s`` (bitnet.cpp ``quantize_row_i8_s``): per token, ``amax = max(max|x|, 1e-5)`` in double,
  ``a = float32(127/amax)``, ``q = clamp(round_half_even(float32(x*a)), -128, 127)``. Value ``q/a``.
* ``absmax_token`` (transformers ``ActQuant``): per token ``s = 127/clamp(max|x|, 1e-5)`` in float32,
  ``q = clamp(round(x*s), -128, 127)`` (torch.round is half to even). Value ``q/s``. transformers
  then runs a float ``linear(q/s, W)``; Tritium computes the exact integer sum and divides it by s
  once (see ternary_matmul), which differs from the peer only by float32 summation rounding.

Each quantizer has a numpy twin (``*_numpy``) and a numba kernel (``*_numba``) with the same
signature, writing into caller-provided arrays so the runtime allocates nothing per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

QK_K = 256  # llama.cpp super-block: the Q8_K activation block and the TQ weight block

SCHEMES = ("q8_k", "i8_s", "absmax_token")


@dataclass
class QuantizedActivations:
    """int8 activations [T, K] and their scales.

    ``scales`` is float32 [T, K // block]. With ``divide`` False (q8_k) a value is ``q * scale``;
    with ``divide`` True (i8_s, absmax_token: one block per token) it is ``q / scale``.
    """

    q: np.ndarray
    scales: np.ndarray
    block: int
    divide: bool


def act_block(scheme: str, k: int) -> int:
    """Number of consecutive K values that share one activation scale under `scheme`."""
    if scheme == "q8_k":
        if k % QK_K:
            raise ValueError(f"q8_k activation quantization needs K % 256 == 0, got K = {k}")
        return QK_K
    if scheme in ("i8_s", "absmax_token"):
        return k
    raise ValueError(f"unknown activation quantization scheme {scheme!r}; expected one of {SCHEMES}")


def empty_quantized(scheme: str, t: int, k: int) -> QuantizedActivations:
    """Buffers for `t` tokens of width `k` (allocated once, reused by `quantize_into`)."""
    block = act_block(scheme, k)
    return QuantizedActivations(
        q=np.zeros((t, k), np.int8), scales=np.zeros((t, k // block), np.float32),
        block=block, divide=scheme != "q8_k")


# ------------------------------------------------------------------------------------------------
# q8_k (llama.cpp)
# ------------------------------------------------------------------------------------------------
def quantize_q8_k_numpy(x: np.ndarray, q: np.ndarray, d: np.ndarray) -> None:
    """x float32 [T, K] -> q int8 [T, K], d float32 [T, K // 256] (llama.cpp Q8_K)."""
    t, k = x.shape
    blocks = np.ascontiguousarray(x, dtype=np.float32).reshape(t, k // QK_K, QK_K)
    first = np.argmax(np.abs(blocks), axis=2)  # first index of the largest |x|, like the strict '>'
    mx = np.take_along_axis(blocks, first[..., None], axis=2)[..., 0]
    zero = mx == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, np.float32(0), np.float32(-127.0) / np.where(zero, np.float32(1), mx))
        iscale = iscale.astype(np.float32)
        v = np.rint((iscale[..., None] * blocks).astype(np.float32))
        q[...] = np.minimum(v, 127).astype(np.int8).reshape(t, k)
        d[...] = np.where(zero, np.float32(0), np.float32(1.0) / np.where(zero, np.float32(1), iscale))


@njit(cache=True)
def quantize_q8_k_numba(x: np.ndarray, q: np.ndarray, d: np.ndarray) -> None:
    """Numba twin of `quantize_q8_k_numpy` (same arguments, same bits)."""
    t, k = x.shape
    nb = k // QK_K
    for i in range(t):
        for b in range(nb):
            o = b * QK_K
            amax = np.float32(0.0)
            mx = np.float32(0.0)
            for j in range(QK_K):
                ax = abs(x[i, o + j])
                if ax > amax:
                    amax = ax
                    mx = x[i, o + j]
            if amax == 0:
                d[i, b] = 0
                for j in range(QK_K):
                    q[i, o + j] = 0
                continue
            iscale = np.float32(-127.0) / mx
            for j in range(QK_K):
                v = np.rint(np.float32(iscale * x[i, o + j]))
                q[i, o + j] = np.int8(min(v, np.float32(127.0)))
            d[i, b] = np.float32(1.0) / iscale


# ------------------------------------------------------------------------------------------------
# i8_s (bitnet.cpp)
# ------------------------------------------------------------------------------------------------
def quantize_i8_s_numpy(x: np.ndarray, q: np.ndarray, a: np.ndarray) -> None:
    """x float32 [T, K] -> q int8 [T, K], a float32 [T, 1] (bitnet.cpp I8_S act_scale)."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.maximum(np.abs(x.astype(np.float64)).max(axis=1), 1e-5)
    scale = (127.0 / amax).astype(np.float32)
    v = np.rint((x * scale[:, None]).astype(np.float32))
    q[...] = np.clip(v, -128, 127).astype(np.int8)
    a[:, 0] = scale


@njit(cache=True)
def quantize_i8_s_numba(x: np.ndarray, q: np.ndarray, a: np.ndarray) -> None:
    """Numba twin of `quantize_i8_s_numpy`."""
    t, k = x.shape
    for i in range(t):
        amax = 0.0  # double, like bitnet.cpp
        for j in range(k):
            amax = max(amax, abs(np.float64(x[i, j])))
        amax = max(amax, 1e-5)
        scale = np.float32(127.0 / amax)
        for j in range(k):
            v = np.rint(np.float32(x[i, j] * scale))
            q[i, j] = np.int8(min(max(v, np.float32(-128.0)), np.float32(127.0)))
        a[i, 0] = scale


# ------------------------------------------------------------------------------------------------
# absmax_token (transformers ActQuant)
# ------------------------------------------------------------------------------------------------
def quantize_absmax_token_numpy(x: np.ndarray, q: np.ndarray, s: np.ndarray) -> None:
    """x float32 [T, K] -> q int8 [T, K], s float32 [T, 1] (transformers ActQuant, value q/s)."""
    x = np.asarray(x, dtype=np.float32)
    m = np.maximum(np.abs(x).max(axis=1), np.float32(1e-5)).astype(np.float32)
    scale = (np.float32(127.0) / m).astype(np.float32)
    v = np.rint((x * scale[:, None]).astype(np.float32))
    q[...] = np.clip(v, -128, 127).astype(np.int8)
    s[:, 0] = scale


@njit(cache=True)
def quantize_absmax_token_numba(x: np.ndarray, q: np.ndarray, s: np.ndarray) -> None:
    """Numba twin of `quantize_absmax_token_numpy`."""
    t, k = x.shape
    for i in range(t):
        m = np.float32(0.0)
        for j in range(k):
            m = max(m, abs(x[i, j]))
        m = max(m, np.float32(1e-5))
        scale = np.float32(127.0) / m
        for j in range(k):
            v = np.rint(np.float32(x[i, j] * scale))
            q[i, j] = np.int8(min(max(v, np.float32(-128.0)), np.float32(127.0)))
        s[i, 0] = scale


NUMPY_QUANTIZERS = {
    "q8_k": quantize_q8_k_numpy,
    "i8_s": quantize_i8_s_numpy,
    "absmax_token": quantize_absmax_token_numpy,
}
NUMBA_QUANTIZERS = {
    "q8_k": quantize_q8_k_numba,
    "i8_s": quantize_i8_s_numba,
    "absmax_token": quantize_absmax_token_numba,
}


def quantize_into(scheme: str, x: np.ndarray, out: QuantizedActivations, *, use_numba: bool = True) -> None:
    """Quantize float32 x [T, K] into the preallocated `out` (its first T rows)."""
    table = NUMBA_QUANTIZERS if use_numba else NUMPY_QUANTIZERS
    t = x.shape[0]
    table[scheme](x, out.q[:t], out.scales[:t])


def quantize(scheme: str, x: np.ndarray, *, use_numba: bool = False) -> QuantizedActivations:
    """Quantize float32 x [T, K] into fresh arrays (reference path and tests)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = empty_quantized(scheme, x.shape[0], x.shape[1])
    quantize_into(scheme, x, out, use_numba=use_numba)
    return out


def dequantize(qa: QuantizedActivations) -> np.ndarray:
    """The float32 values the quantized activations stand for, [T, K] (tests and diagnostics)."""
    scales = np.repeat(qa.scales, qa.block, axis=1)
    vals = qa.q.astype(np.float32)
    return vals / scales if qa.divide else vals * scales
