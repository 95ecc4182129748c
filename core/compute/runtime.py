"""The fast forward pass: the reference's math with numba kernels and no allocation in the layer loop.

llama2.c's RunState, in Python: every activation buffer is allocated once for the largest step seen
so far (`_Scratch`), weights are the memory-mapped views of `ModelWeights`, and each `Sequence` owns
its KV cache. `Runtime.step` concatenates the new tokens of several sequences so every weight matrix
is streamed once per step (continuous batching); attention runs per sequence over its own cache.

Numerics match `reference.reference_forward(precision="float32")`: the activation scheme of
`config.act_quant` bit for bit (act_quant.py), exact integer ternary sums (ternary_matmul.py), ggml's
float32 RMSNorm/SiLU/softmax, and with ``kv_dtype="f16"`` the fp16 roundings of the model's origin
(precision.py). The last token's logits only are computed unless `all_logits` is asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence as SequenceOf

import numba
import numpy as np
from tritium.core.compute.act_quant import QuantizedActivations, act_block, empty_quantized, quantize_into
from tritium.core.compute.attention import attention_numba, rope_numba, rope_style, rope_tables
from tritium.core.compute.pointwise import ACTIVATIONS, gated_act_numba, rmsnorm_numba
from tritium.core.compute.precision import fp16_rounding
from tritium.core.compute.ternary_matmul import (
    PackedActivations,
    dense_matmul_numba,
    empty_packed,
    pack_activations,
    plan_weight,
    ternary_matmul_numba,
    work_items,
)
from tritium.core.errors import ContextOverflowError
from tritium.core.model.config import ModelConfig
from tritium.core.model.weights import DenseWeight, Linear, ModelWeights, TernaryWeight, TL1Weight

_DENSE_ROWS = 256  # rows of a ternary matrix dequantized at a time when activations stay float


class Sequence:
    """One token stream's KV cache and length. Create with `Runtime.new_sequence()`.

    The caches are [n_layer, n_head_kv, n_ctx, head_dim] zero-initialised arrays: the OS maps their
    pages lazily, so memory grows with the positions actually written (per head, in 4 KiB pages),
    not with n_ctx.
    """

    def __init__(self, config: ModelConfig, n_ctx: int, kv_dtype: str) -> None:
        dt = np.float16 if kv_dtype == "f16" else np.float32
        shape = (config.n_layer, config.n_head_kv, n_ctx, config.head_dim)
        self.k = np.zeros(shape, dt)
        self.v = np.zeros(shape, dt)
        self.n_ctx = n_ctx
        self.n_past = 0

    def truncate(self, n: int) -> None:
        """Forget every position >= n (the next eval continues at position n)."""
        if not 0 <= n <= self.n_past:
            raise ValueError(f"truncate({n}): the sequence holds {self.n_past} positions")
        self.n_past = n


class _Scratch:
    """Every activation buffer of one step, for up to `t` tokens (RunState)."""

    def __init__(self, c: ModelConfig, t: int, scheme: str, shifts: set, n_attn: int) -> None:
        e, kv, f = c.n_embd, c.n_embd_kv, c.n_ff
        self.t = t
        self.x = np.zeros((t, e), np.float32)  # residual stream
        self.h = np.zeros((t, e), np.float32)  # normed input of a matmul
        self.q = np.zeros((t, n_attn), np.float32)
        self.k = np.zeros((t, kv), np.float32)
        self.v = np.zeros((t, kv), np.float32)
        self.att = np.zeros((t, n_attn), np.float32)
        self.att_n = np.zeros((t, n_attn), np.float32)
        self.proj = np.zeros((t, e), np.float32)
        self.gate = np.zeros((t, f), np.float32)
        self.up = np.zeros((t, f), np.float32)
        self.ffn = np.zeros((t, f), np.float32)
        self.ffn_n = np.zeros((t, f), np.float32)
        self.quant: dict[int, QuantizedActivations] = {}
        self.packed: dict[tuple[int, tuple], PackedActivations] = {}
        if scheme != "none":
            for width in {e, n_attn, f}:
                self.quant[width] = empty_quantized(scheme, t, width)
                for s in shifts:
                    self.packed[(width, s)] = empty_packed(t, width, self.quant[width], s)


class Runtime:
    """Runs a model: `new_sequence()`, then `eval(seq, tokens)` or `step([(seq, tokens), ...])`.

    One step at a time: the scratch buffers are shared, so calls must not overlap (the engine loop
    serialises them). `threads` sets numba's thread count for every step (default: all CPUs).
    """

    def __init__(self, config: ModelConfig, weights: ModelWeights, *, threads: int | None = None,
                 kv_dtype: str | None = None, n_ctx: int | None = None) -> None:
        if kv_dtype is None:  # as the model's origin runs it: llama.cpp/bitnet.cpp default to an F16 cache
            kv_dtype = "f16" if config.fp16_kv_reference else "f32"
        fp16_rounding(config.act_quant, kv_dtype, 1, False)  # validates kv_dtype
        self.config = config
        self.weights = weights
        self.kv_dtype = kv_dtype
        self.n_ctx = int(n_ctx or config.n_ctx)
        self.threads = max(1, min(int(threads or os.cpu_count() or 1), numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(self.threads)
        self._items = work_items()
        self.cos, self.sin = rope_tables(self.n_ctx, config.n_rot, config.rope_base,
                                         rope_style(config.act_quant))
        self._act = ACTIVATIONS[config.ffn_act]
        self._n_attn = config.n_head * config.head_dim
        self._shifts = {lin.plane_shifts for layer in weights.layers for lin in layer.linears().values()
                        if isinstance(lin, TernaryWeight)}
        self._scratch: _Scratch | None = None
        # per-weight kernel views, computed once; the sub-block size is checked here, not per call
        self._plans = {}
        for layer in weights.layers:
            for lin in layer.linears().values():
                if isinstance(lin, TernaryWeight) and config.act_quant != "none":
                    block = act_block(config.act_quant, lin.in_features)
                    if math.gcd(block, lin.scale_block) % 128:
                        raise ValueError(f"{lin.name}: activation block {block} and weight scale block "
                                         f"{lin.scale_block} need a common multiple-of-128 sub-block")
                    self._plans[id(lin)] = plan_weight(lin)
        lm = weights.lm_head
        if lm.dtype not in (np.float16, np.float32):
            raise ValueError(f"lm_head must be float16 or float32, got {lm.dtype}")
        self._lm_f16 = lm.dtype == np.float16

    def new_sequence(self) -> Sequence:
        """An empty sequence with room for n_ctx positions."""
        return Sequence(self.config, self.n_ctx, self.kv_dtype)

    def eval(self, seq: Sequence, tokens: SequenceOf[int], all_logits: bool = False) -> np.ndarray:
        """Append `tokens` to `seq`; logits float32 [T, n_vocab] (all_logits) or [1, n_vocab] (last)."""
        return self.step([(seq, tokens)], all_logits=all_logits)[0]

    def step(self, batch: list[tuple[Sequence, SequenceOf[int]]],
             all_logits: bool = False, logits_out: np.ndarray | None = None) -> list[np.ndarray]:
        """One forward call over the new tokens of several sequences (weights streamed once).
        Returns, per sequence, its logits as in `eval`: views of `logits_out` when given (float32
        [rows, n_vocab], rows = tokens with all_logits, else sequences; a backend passes its shared
        logits segment so the lm_head writes there and nothing is copied), else of a new array."""
        c = self.config
        numba.set_num_threads(self.threads)  # numba's thread count is per calling thread
        ids, positions, spans = self._plan(batch)
        t = len(ids)
        n_rows = t if all_logits else len(spans)
        if logits_out is not None and (logits_out.shape != (n_rows, c.n_vocab)
                                       or logits_out.dtype != np.float32):
            raise ValueError(f"logits_out must be float32 {(n_rows, c.n_vocab)}, got {logits_out.dtype} "
                             f"{logits_out.shape}")
        s = self._buffers(t)
        r = fp16_rounding(c.act_quant, self.kv_dtype, t, self._lm_f16)
        x = s.x[:t]
        x[...] = self.weights.token_embd[ids]
        for li, layer in enumerate(self.weights.layers):
            h = s.h[:t]
            rmsnorm_numba(x, layer.attn_norm, c.rms_eps, h)
            q, k, v = s.q[:t], s.k[:t], s.v[:t]
            self._linears(h, [(layer.wq, q), (layer.wk, k), (layer.wv, v)])
            q3 = q.reshape(t, c.n_head, c.head_dim)
            k3 = k.reshape(t, c.n_head_kv, c.head_dim)
            rope_numba(q3, positions, self.cos, self.sin)
            rope_numba(k3, positions, self.cos, self.sin)
            att = s.att[:t].reshape(t, c.n_head, c.head_dim)
            for seq, a, b in spans:
                p0 = seq.n_past
                v3 = v[a:b].reshape(b - a, c.n_head_kv, c.head_dim)
                seq.k[li, :, p0:p0 + b - a] = k3[a:b].transpose(1, 0, 2)
                seq.v[li, :, p0:p0 + b - a] = v3.transpose(1, 0, 2)
                attention_numba(q3[a:b], seq.k[li], seq.v[li], p0, r.q, r.probs, att[a:b])
            att_n = s.att_n[:t]
            rmsnorm_numba(s.att[:t], layer.attn_sub_norm, c.rms_eps, att_n)
            proj = s.proj[:t]
            self._linears(att_n, [(layer.wo, proj)])
            x += proj
            rmsnorm_numba(x, layer.ffn_norm, c.rms_eps, h)
            gate, up, ffn = s.gate[:t], s.up[:t], s.ffn[:t]
            self._linears(h, [(layer.w_gate, gate), (layer.w_up, up)])
            gated_act_numba(gate, up, self._act, ffn)
            ffn_n = s.ffn_n[:t]
            rmsnorm_numba(ffn, layer.ffn_sub_norm, c.rms_eps, ffn_n)
            self._linears(ffn_n, [(layer.w_down, proj)])
            x += proj
        for seq, a, b in spans:
            seq.n_past += b - a
        rows = np.arange(t) if all_logits else np.array([b - 1 for _, _, b in spans])
        hn = np.empty((len(rows), c.n_embd), np.float32)
        rmsnorm_numba(np.ascontiguousarray(x[rows]), self.weights.output_norm, c.rms_eps, hn)
        if r.lm_input:
            hn = hn.astype(np.float16).astype(np.float32)
        logits = np.empty((len(rows), c.n_vocab), np.float32) if logits_out is None else logits_out
        dense_matmul_numba(self.weights.lm_head, hn, logits, self._items)
        if all_logits:
            return [logits[a:b] for _, a, b in spans]
        return [logits[i:i + 1] for i in range(len(spans))]

    # --------------------------------------------------------------------------------------------
    def _plan(self, batch: list[tuple[Sequence, SequenceOf[int]]]) -> tuple[np.ndarray, np.ndarray, list]:
        """Token ids, absolute positions and each sequence's row span [a, b) of the step."""
        if not batch:
            raise ValueError("step() needs at least one (sequence, tokens) pair")
        ids, positions, spans, seen = [], [], [], set()
        for seq, tokens in batch:
            if id(seq) in seen:
                raise ValueError("a sequence appears twice in one step")
            seen.add(id(seq))
            toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
            if len(toks) == 0:
                raise ValueError("every sequence in a step needs at least one token")
            if toks.min() < 0 or toks.max() >= self.config.n_vocab:
                raise ValueError(f"token ids must be in [0, {self.config.n_vocab}), got "
                                 f"{toks.min()}..{toks.max()}")
            if seq.n_past + len(toks) > seq.n_ctx:
                raise ContextOverflowError(f"sequence holds {seq.n_past} positions; {len(toks)} more exceed "
                                           f"the context of {seq.n_ctx}")
            a = len(ids)
            ids.extend(toks.tolist())
            positions.extend(range(seq.n_past, seq.n_past + len(toks)))
            spans.append((seq, a, len(ids)))
        return np.array(ids, np.int64), np.array(positions, np.int64), spans

    def _buffers(self, t: int) -> _Scratch:
        if self._scratch is None or self._scratch.t < t:
            self._scratch = _Scratch(self.config, t, self.config.act_quant, self._shifts, self._n_attn)
        return self._scratch

    def _linears(self, x: np.ndarray, jobs: list[tuple[Linear, np.ndarray]]) -> None:
        """out = W·x for each (W, out); the activations are quantized once and shared."""
        s = self._scratch
        assert s is not None
        t, width = x.shape
        qa = None
        packed: dict[tuple, PackedActivations] = {}
        for w, out in jobs:
            if isinstance(w, TernaryWeight) and self.config.act_quant != "none":
                if qa is None:
                    qa = s.quant[width]
                    quantize_into(self.config.act_quant, x, qa)
                key = tuple(w.plane_shifts)
                if key not in packed:
                    packed[key] = pack_activations(qa, w.plane_shifts, s.packed[(width, key)], n_tokens=t)
                ternary_matmul_numba(w, packed[key], out, self._plans[id(w)], self._items)
            elif isinstance(w, DenseWeight):
                dense_matmul_numba(w.data, x, out, self._items)
            else:
                _float_ternary(w, x, out)


def _float_ternary(w: TernaryWeight, x: np.ndarray, out: np.ndarray) -> None:
    """Ternary weight with float activations (act_quant "none"): dequantize a few rows at a time so
    the whole matrix never exists in float."""
    for r0 in range(0, w.out_features, _DENSE_ROWS):
        r1 = min(w.out_features, r0 + _DENSE_ROWS)
        if isinstance(w, TL1Weight):  # no codes: a row range of the tiles (_DENSE_ROWS % 16 == 0)
            part: TernaryWeight = w.rows(r0, r1)
        else:
            part = TernaryWeight(w.name, r1 - r0, w.in_features, w.codes[r0:r1], w.plane_shifts,
                                 w.block_scales[r0:r1], w.scale_block, w.tensor_scale)
        out[:, r0:r1] = x @ part.dequantize().T
