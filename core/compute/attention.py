"""Rotary position embedding (NeoX pairs) and causal GQA attention over a KV cache.

RoPE, NeoX layout (llama.cpp rope type 2, transformers rotate_half): dims (i, i + n_rot/2) form a
pair rotated by theta_i = pos · base^(-2i/n_rot); dims >= n_rot pass through. The cos/sin tables are
built once per runtime with the origin's float32 angle arithmetic (`rope_tables`); the rotation is
float32.

Attention follows ggml's CPU path (no flash attention): scores = (q·k) · 1/sqrt(head_dim) over the
positions 0..pos of the same sequence, softmax in float32 with the exp-sum in float64 and the
probabilities scaled by float32(1/sum), then Σ p·v in float32. Query head h reads kv head
h // (n_head / n_head_kv). With an fp16 KV cache, the peers also round Q to fp16 before K·Q and, on
some calls, the probabilities to fp16 before ·V (`round_q`, `round_probs`; see reference.py for when).

K/V caches are [n_head_kv, n_ctx, head_dim] per layer (each head's positions contiguous, so a
decode step streams them sequentially), float32 or float16 (the numba kernel reads fp16 through its
bit pattern). The numba kernel and the numpy twin take the same arguments.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from tritium.core.compute.attention_simd import CHUNK, dot_row, weighted_rows
from tritium.core.compute.float16 import F16C, f16_bits_to_f32, round_f16

ROPE_STYLES = ("ggml", "hf", "exact")


def rope_tables(n_pos: int, n_rot: int, base: float, style: str = "ggml") -> tuple[np.ndarray, np.ndarray]:
    """cos, sin float32 [n_pos, n_rot // 2] for positions 0..n_pos-1, with the origin's float32 angles.

    "ggml" (llama.cpp, bitnet.cpp): theta starts at float32(pos) and is multiplied by
    powf(base, -2/n_rot) once per pair, in float32; "hf" (transformers): inv_freq =
    1/base^(2i/n_rot) and pos·inv_freq in float32; "exact": float64 angles, rounded at the end.
    Matching the origin's angles removes most of the int8 rounding flips against it.
    """
    half = n_rot // 2
    pos = np.arange(n_pos, dtype=np.float32)
    if style == "ggml":
        step = np.float32(np.float32(base) ** np.float32(-2.0 / n_rot))
        theta = np.empty((n_pos, half), np.float32)
        theta[:, 0] = pos
        for i in range(1, half):
            theta[:, i] = theta[:, i - 1] * step
    elif style == "hf":
        inv = (np.float32(1.0) / np.float32(base) ** (np.arange(0, n_rot, 2, dtype=np.float32) / n_rot))
        theta = pos[:, None] * inv.astype(np.float32)[None, :]
    elif style == "exact":
        inv = float(base) ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
        ang = np.arange(n_pos, dtype=np.float64)[:, None] * inv[None, :]
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    else:
        raise ValueError(f"rope style must be one of {ROPE_STYLES}, got {style!r}")
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


def rope_style(act_quant: str) -> str:
    """The rope angle arithmetic of the activation scheme's origin."""
    return "hf" if act_quant == "absmax_token" else "ggml"


def rope_numpy(x: np.ndarray, positions: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate x float32 [T, n_heads, head_dim] in place; token t is at positions[t]."""
    half = cos.shape[1]
    c = cos[positions][:, None, :]
    s = sin[positions][:, None, :]
    a = x[..., :half].copy()
    b = x[..., half:2 * half].copy()
    x[..., :half] = a * c - b * s
    x[..., half:2 * half] = a * s + b * c


@njit(cache=True)
def rope_numba(x: np.ndarray, positions: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Numba twin of `rope_numpy` (same float32 operations, same bits)."""
    t, nh, _ = x.shape
    half = cos.shape[1]
    for i in range(t):
        p = positions[i]
        for h in range(nh):
            for d in range(half):
                a = x[i, h, d]
                b = x[i, h, d + half]
                x[i, h, d] = a * cos[p, d] - b * sin[p, d]
                x[i, h, d + half] = a * sin[p, d] + b * cos[p, d]


def attention_numpy(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, n_past: int,
                    round_q: bool, round_probs: bool, out: np.ndarray) -> None:
    """out[t, h] = softmax(q[t, h]·K[:n_past+t+1]ᵀ / sqrt(hd)) · V for a batch of T consecutive tokens
    whose K/V are already in the caches at positions n_past..n_past+T-1."""
    t, nh, hd = q.shape
    nkv = k_cache.shape[0]
    group = nh // nkv
    scale = np.float32(1.0 / np.sqrt(hd))
    qf = q.astype(np.float16).astype(np.float32) if round_q else q.astype(np.float32)
    n = n_past + t
    k = k_cache[:, :n].astype(np.float32)
    v = v_cache[:, :n].astype(np.float32)
    for h in range(nh):
        kv = h // group
        scores = (qf[:, h, :] @ k[kv].T).astype(np.float32) * scale  # [t, n]
        for i in range(t):
            sc = scores[i, :n_past + i + 1]
            e = np.exp(sc - sc.max()).astype(np.float32)
            p = e * np.float32(1.0 / e.astype(np.float64).sum())
            if round_probs:
                p = p.astype(np.float16).astype(np.float32)
            out[i, h, :] = p @ v[kv, :n_past + i + 1]


@njit(cache=True, inline="always")
def _query(q, i, h, round_q):  # noqa: ANN001, ANN202
    """Query head h of token i as float32, rounded to fp16 first where the origin does."""
    hd = q.shape[2]
    qv = np.empty(hd, np.float32)
    for d in range(hd):
        qv[d] = round_f16(q[i, h, d]) if round_q else q[i, h, d]
    return qv


@njit(cache=True, inline="always")
def _probabilities(p, n, mx, round_probs):  # noqa: ANN001, ANN202
    """Scores p[:n] (max mx) -> softmax probabilities in place: ggml's float32 exp, the sum in float64,
    then p · float32(1/sum), rounded to fp16 where the origin does."""
    total = 0.0
    for j in range(n):
        e = np.exp(p[j] - mx)
        p[j] = e
        total += np.float64(e)
    inv = np.float32(1.0 / total)
    for j in range(n):
        pj = p[j] * inv
        p[j] = round_f16(pj) if round_probs else pj


# reassociation lets LLVM vectorize the float32 dot products and sums (rounding-level differences)
@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _attention_kernel(q, k_cache, v_cache, kv_f16, n_past, round_q, round_probs, out):  # noqa: ANN001
    t, nh, hd = q.shape
    nkv = k_cache.shape[0]
    group = nh // nkv
    scale = np.float32(1.0 / np.sqrt(hd))
    n_max = n_past + t
    for item in prange(t * nh):
        i = item // nh
        h = item % nh
        kv = h // group
        n = n_past + i + 1
        qv = _query(q, i, h, round_q)
        p = np.empty(n_max, np.float32)
        mx = np.float32(-np.inf)
        for j in range(n):
            s = np.float32(0.0)
            if kv_f16:
                kr = k_cache[kv, j]
                for d in range(hd):
                    s += qv[d] * f16_bits_to_f32(kr[d])
            else:
                kr = k_cache[kv, j]
                for d in range(hd):
                    s += qv[d] * kr[d]
            s *= scale
            p[j] = s
            mx = max(mx, s)
        _probabilities(p, n, mx, round_probs)
        o = out[i, h]
        for d in range(hd):
            o[d] = 0
        for j in range(n):
            pj = p[j]
            vr = v_cache[kv, j]
            if kv_f16:
                for d in range(hd):
                    o[d] += pj * f16_bits_to_f32(vr[d])
            else:
                for d in range(hd):
                    o[d] += pj * vr[d]


@njit(parallel=True, cache=True)
def _attention_simd_kernel(q, k_cache, v_cache, n_past, round_q, round_probs, out):  # noqa: ANN001
    """`_attention_kernel` with the vector loops of attention_simd.py (head_dim % 32 == 0, C-contiguous
    caches and output); the same operations in a fixed float32 order."""
    t, nh, hd = q.shape
    nkv, n_ctx, _ = k_cache.shape
    group = nh // nkv
    scale = np.float32(1.0 / np.sqrt(hd))
    n_max = n_past + t
    for item in prange(t * nh):
        i = item // nh
        h = item % nh
        n = n_past + i + 1
        base = (h // group) * n_ctx * hd  # this kv head's rows in the flat cache
        qv = _query(q, i, h, round_q)
        p = np.empty(n_max, np.float32)
        mx = np.float32(-np.inf)
        q_off = 0  # a variable, so the intrinsic is typed with int64 rather than a literal
        for j in range(n):
            s = dot_row(qv, q_off, k_cache, base + j * hd, hd) * scale
            p[j] = s
            mx = max(mx, s)
        _probabilities(p, n, mx, round_probs)
        weighted_rows(p, n, v_cache, base, hd, out, (i * nh + h) * hd, hd)


def attention_numba(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, n_past: int,
                    round_q: bool, round_probs: bool, out: np.ndarray) -> None:
    """Numba twin of `attention_numpy` (float32 sums in a different order: equal to ~1e-6)."""
    f16 = k_cache.dtype == np.float16
    if (q.shape[2] % CHUNK == 0 and (F16C or not f16) and out.flags.c_contiguous
            and k_cache.flags.c_contiguous and v_cache.flags.c_contiguous):
        kc, vc = (k_cache.view(np.uint16), v_cache.view(np.uint16)) if f16 else (k_cache, v_cache)
        _attention_simd_kernel(q, kc, vc, n_past, round_q, round_probs, out)
        return
    if f16:
        _attention_kernel(q, k_cache.view(np.uint16), v_cache.view(np.uint16), True, n_past, round_q,
                          round_probs, out)
    else:
        _attention_kernel(q, k_cache, v_cache, False, n_past, round_q, round_probs, out)
