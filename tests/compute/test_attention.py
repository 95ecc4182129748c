"""RoPE, attention, RMSNorm, FFN activation, fp16 helpers: numba kernels vs numpy twins."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from tritium.core.compute import attention as at
from tritium.core.compute import pointwise as pw
from tritium.core.compute.float16 import f16_bits_to_f32, f16_bits_to_f32_arith, f32_to_f16_bits


@njit(cache=True)
def _roundtrip(x, bits, back):  # noqa: ANN001
    for i in range(x.shape[0]):
        bits[i] = f32_to_f16_bits(x[i])
    for i in range(x.shape[0]):
        back[i] = f16_bits_to_f32(bits[i])


def test_fp16_conversions_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(5000) * 10.0 ** rng.integers(-9, 4, 5000),
                        [0.0, -0.0, 65504.0, 6e-8, 3e-8, 2.9802322e-08, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11]])
    x = x.astype(np.float32)
    bits = np.zeros(len(x), np.uint16)
    back = np.zeros(len(x), np.float32)
    _roundtrip(x, bits, back)
    assert np.array_equal(bits, x.astype(np.float16).view(np.uint16))
    assert np.array_equal(back, x.astype(np.float16).astype(np.float32))


@njit(cache=True)
def _decode_both(bits, hw, arith):  # noqa: ANN001
    for i in range(bits.shape[0]):
        hw[i] = f16_bits_to_f32(bits[i])
        arith[i] = f16_bits_to_f32_arith(bits[i])


def test_every_finite_fp16_pattern_decodes_exactly() -> None:
    # f16_bits_to_f32 is F16C's conversion where the host has it and the arithmetic twin elsewhere:
    # both must give numpy's value for all 63,488 finite patterns (zeros and subnormals included).
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    hw, arith = np.zeros(65536, np.float32), np.zeros(65536, np.float32)
    _decode_both(bits, hw, arith)
    finite = np.isfinite(bits.view(np.float16))
    want = bits.view(np.float16).astype(np.float32)[finite].view(np.uint32)
    assert np.array_equal(hw[finite].view(np.uint32), want)
    assert np.array_equal(arith[finite].view(np.uint32), want)


def test_rope_numba_equals_numpy() -> None:
    rng = np.random.default_rng(1)
    cos, sin = at.rope_tables(64, 32, 10000.0)
    x = rng.standard_normal((5, 3, 48)).astype(np.float32)  # n_rot 32 < head_dim 48
    pos = np.array([0, 1, 7, 30, 63])
    a, b = x.copy(), x.copy()
    at.rope_numpy(a, pos, cos, sin)
    at.rope_numba(b, pos, cos, sin)
    assert np.array_equal(a, b)
    assert np.array_equal(a[..., 32:], x[..., 32:])
    assert np.array_equal(a[0], x[0])  # position 0 is the identity


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("rounding", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("n_past,t", [(0, 6), (9, 1), (4, 3)])
@pytest.mark.parametrize("hd", [32, 48, 64])  # 48: not a multiple of 32, the plain kernel
def test_attention_numba_close_to_numpy(kv_f16: bool, rounding: tuple, n_past: int, t: int, hd: int) -> None:
    rng = np.random.default_rng(n_past * 10 + t)
    nh, nkv, n_ctx = 8, 2, 16
    q = rng.standard_normal((t, nh, hd)).astype(np.float32)
    dt = np.float16 if kv_f16 else np.float32
    k = rng.standard_normal((nkv, n_ctx, hd)).astype(dt)
    v = rng.standard_normal((nkv, n_ctx, hd)).astype(dt)
    a = np.zeros((t, nh, hd), np.float32)
    b = np.zeros((t, nh, hd), np.float32)
    at.attention_numpy(q, k, v, n_past, rounding[0], rounding[1], a)
    at.attention_numba(q, k, v, n_past, rounding[0], rounding[1], b)
    assert np.allclose(a, b, rtol=1e-5, atol=1e-5)
    # causal: the first new token sees exactly n_past + 1 positions
    kk = k.astype(np.float64)[0, : n_past + 1]
    s = (q[0, 0].astype(np.float64) @ kk.T) / np.sqrt(hd)
    p = np.exp(s - s.max())
    want = (p / p.sum()) @ v.astype(np.float64)[0, : n_past + 1]
    assert np.allclose(a[0, 0], want, atol=2e-3)


@pytest.mark.parametrize("kv_f16", [False, True])
def test_a_token_attends_alike_in_a_prefill_and_alone(kv_f16: bool) -> None:
    # Each (token, head) is computed in a fixed order whatever the batch around it: a prefill of 7
    # tokens and the same tokens one call each give the same bits (what exact recompute relies on).
    rng = np.random.default_rng(3)
    nh, nkv, hd, n_ctx, t = 4, 2, 64, 32, 7
    dt = np.float16 if kv_f16 else np.float32
    q = rng.standard_normal((t, nh, hd)).astype(np.float32)
    k = rng.standard_normal((nkv, n_ctx, hd)).astype(dt)
    v = rng.standard_normal((nkv, n_ctx, hd)).astype(dt)
    together = np.zeros((t, nh, hd), np.float32)
    at.attention_numba(q, k, v, 5, kv_f16, kv_f16, together)
    for i in range(t):
        alone = np.zeros((1, nh, hd), np.float32)
        at.attention_numba(q[i:i + 1], k, v, 5 + i, kv_f16, kv_f16, alone)
        assert np.array_equal(alone[0], together[i])


def test_rmsnorm_and_gated_act_twins() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, 640)) * 5).astype(np.float32)
    w = rng.standard_normal(640).astype(np.float32)
    a, b = np.zeros_like(x), np.zeros_like(x)
    pw.rmsnorm_numpy(x, w, 1e-5, a)
    pw.rmsnorm_numba(x, w, 1e-5, b)
    assert np.allclose(a, b, rtol=1e-6, atol=1e-6)
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-5) * w
    assert np.allclose(a, want, rtol=1e-5, atol=1e-5)
    u = rng.standard_normal((4, 640)).astype(np.float32)
    for act in (0, 1):
        pw.gated_act_numpy(x, u, act, a)
        pw.gated_act_numba(x, u, act, b)
        assert np.allclose(a, b, rtol=1e-6, atol=1e-6)
