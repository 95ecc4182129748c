"""The reference forward pass: plain numpy that reads like the BitNet b1.58 paper, top to bottom.

It is the twin of the fast path (`runtime.py`): the same graph, the same activation quantization
(`config.act_quant`, reproduced exactly by `act_quant.py`) and ternary integer sums
(`ternary_matmul_numpy`), the same fp16 emulation (`precision.py`). `precision` picks the float type of
everything around the quantized matmuls: float64 is the independent check against the peers,
float32 follows the runtime's arithmetic.

Per layer (no biases anywhere):
    h = RMSNorm(x)·attn_norm
    q, k, v = Wq·h, Wk·h, Wv·h                  int8 activations × ternary weights, scaled
    q, k = RoPE(q), RoPE(k)                      NeoX pairs (i, i + n_rot/2)
    a = softmax(q·kᵀ/√d + causal mask)·v         GQA, over the KV cache
    x = x + Wo·(RMSNorm(a)·attn_sub_norm)        the BitNet sub-norm sits before Wo
    h = RMSNorm(x)·ffn_norm
    f = act(Wgate·h) ⊙ (Wup·h)                   act = SiLU (llama.cpp `bitnet`) or ReLU² (b1.58/HF)
    x = x + Wdown·(RMSNorm(f)·ffn_sub_norm)
logits = lm_head·(RMSNorm(x)·output_norm)        lm_head = token embedding when tied
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tritium.core.compute.act_quant import quantize
from tritium.core.compute.attention import rope_style, rope_tables
from tritium.core.compute.precision import Fp16Rounding, fp16_rounding
from tritium.core.compute.ternary_matmul import pack_activations, ternary_matmul_numpy
from tritium.core.model.config import ModelConfig
from tritium.core.model.weights import Linear, ModelWeights, TernaryWeight


def reference_forward(config: ModelConfig, weights: ModelWeights, tokens: Sequence[int], *,
                      kv_dtype: str = "f32", precision: str = "float64",
                      batch_sizes: Sequence[int] | None = None) -> np.ndarray:
    """Logits float32 [T, n_vocab] of every position of `tokens` (one sequence from position 0).

    `batch_sizes` splits the tokens into consecutive forward calls (default: one call), which matters
    only for the fp16 emulation (`kv_dtype="f16"`): bitnet.cpp rounds more in single-token calls.
    """
    dt = {"float64": np.float64, "float32": np.float32}[precision]
    tokens = np.asarray(tokens, dtype=np.int64)
    sizes = list(batch_sizes) if batch_sizes is not None else [len(tokens)]
    if sum(sizes) != len(tokens):
        raise ValueError(f"batch_sizes {sizes} do not add up to {len(tokens)} tokens")
    n = len(tokens)
    cache_dtype = np.float16 if kv_dtype == "f16" else dt
    k_cache = [np.zeros((n, config.n_head_kv, config.head_dim), cache_dtype) for _ in range(config.n_layer)]
    v_cache = [np.zeros_like(k) for k in k_cache]
    out, pos = [], 0
    for size in sizes:
        r = fp16_rounding(config.act_quant, kv_dtype, size, weights.lm_head.dtype == np.float16)
        out.append(_forward_call(config, weights, tokens[pos:pos + size], pos, k_cache, v_cache, r, dt))
        pos += size
    return np.concatenate(out).astype(np.float32)


def _forward_call(c: ModelConfig, w: ModelWeights, tokens: np.ndarray, pos0: int, k_cache: list,
                  v_cache: list, r: Fp16Rounding, dt: type) -> np.ndarray:
    t = len(tokens)
    positions = np.arange(pos0, pos0 + t)
    x = w.token_embd[tokens].astype(dt)
    for i, layer in enumerate(w.layers):
        # attention block
        h = rmsnorm(x, layer.attn_norm, c.rms_eps)
        q = linear(h, layer.wq, c.act_quant).reshape(t, c.n_head, c.head_dim)
        k = linear(h, layer.wk, c.act_quant).reshape(t, c.n_head_kv, c.head_dim)
        v = linear(h, layer.wv, c.act_quant).reshape(t, c.n_head_kv, c.head_dim)
        style = rope_style(c.act_quant)
        q = rope(q, positions, c.n_rot, c.rope_base, style)
        k = rope(k, positions, c.n_rot, c.rope_base, style)
        k_cache[i][positions] = k
        v_cache[i][positions] = v
        a = attention(q, k_cache[i], v_cache[i], pos0, r, dt).reshape(t, c.n_embd)
        x = x + linear(rmsnorm(a, layer.attn_sub_norm, c.rms_eps), layer.wo, c.act_quant)
        # feed-forward block
        h = rmsnorm(x, layer.ffn_norm, c.rms_eps)
        f = activation(linear(h, layer.w_gate, c.act_quant), c.ffn_act) * linear(h, layer.w_up, c.act_quant)
        x = x + linear(rmsnorm(f, layer.ffn_sub_norm, c.rms_eps), layer.w_down, c.act_quant)
    h = rmsnorm(x, w.output_norm, c.rms_eps)
    if r.lm_input:
        h = h.astype(np.float16).astype(dt)
    return h @ w.lm_head.astype(dt).T


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x²) + eps) · weight, per row."""
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * weight.astype(x.dtype)


def linear(x: np.ndarray, weight: Linear, act_quant: str) -> np.ndarray:
    """W·x for every row of x. A ternary weight with an activation scheme runs the exact integer
    path of the scheme's origin (activations rounded to float32 first, as every peer holds them);
    otherwise a float matmul with the dequantized weight."""
    if isinstance(weight, TernaryWeight) and act_quant != "none":
        qa = quantize(act_quant, x.astype(np.float32))
        y = np.zeros((x.shape[0], weight.out_features), np.float32)
        ternary_matmul_numpy(weight, pack_activations(qa, weight.plane_shifts), y)
        return y.astype(x.dtype)
    return x @ weight.dequantize().astype(x.dtype).T


def rope(x: np.ndarray, positions: np.ndarray, n_rot: int, base: float, style: str) -> np.ndarray:
    """NeoX rotary embedding: pairs (i, i + n_rot/2) rotated by pos · base^(-2i/n_rot). In float32 the
    angles are the origin's float32 ones (attention.rope_tables); in float64 they are exact."""
    half = n_rot // 2
    if x.dtype == np.float32:
        cos, sin = rope_tables(int(positions.max()) + 1, n_rot, base, style)
        cos, sin = cos[positions][:, None, :], sin[positions][:, None, :]
    else:
        theta = positions[:, None] * float(base) ** (-np.arange(half) * 2.0 / n_rot)[None, :]
        cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    a, b = x[..., :half], x[..., half:n_rot]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos, x[..., n_rot:]], axis=-1)


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int, r: Fp16Rounding,
              dt: type) -> np.ndarray:
    """Causal softmax attention of T new queries over the cache (positions < pos0 + T), GQA."""
    t, n_head, head_dim = q.shape
    group = n_head // k_cache.shape[1]
    n = pos0 + t
    if r.q:
        q = q.astype(np.float16).astype(dt)
    k, v = k_cache[:n].astype(dt), v_cache[:n].astype(dt)
    mask = np.triu(np.full((t, n), -np.inf), k=pos0 + 1)
    out = np.empty_like(q)
    for h in range(n_head):
        scores = q[:, h] @ k[:, h // group].T / np.sqrt(head_dim) + mask
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p = p / p.sum(axis=-1, keepdims=True)
        if r.probs:
            p = p.astype(np.float16).astype(dt)
        out[:, h] = p @ v[:, h // group]
    return out


def activation(g: np.ndarray, kind: str) -> np.ndarray:
    """The FFN gate activation: SiLU or ReLU²."""
    if kind == "silu":
        return g / (1.0 + np.exp(-g))
    if kind == "relu2":
        return np.maximum(g, 0.0) ** 2
    raise ValueError(f"unknown ffn activation {kind!r}")
