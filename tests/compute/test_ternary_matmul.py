"""Ternary and dense matmul: numba kernels vs numpy twins (bit-exact), and vs a plain int64 matmul."""

from __future__ import annotations

import numpy as np
import pytest
from tritium.core.compute import act_quant as aq
from tritium.core.compute import ternary_matmul as tm
from tritium.core.model.weights import I2S_PLANE_SHIFTS, TQ2_PLANE_SHIFTS, TernaryWeight


def make_weight(rng: np.random.Generator, m: int, k: int, shifts: tuple, scale_block: int,
                tensor_scale: float = 1.0) -> tuple[TernaryWeight, np.ndarray]:
    tern = rng.integers(-1, 2, (m, k)).astype(np.int8)
    c = (tern + 1).astype(np.uint8).reshape(m, k // 128, 4, 32)
    codes = (c[:, :, 0] << shifts[0]) | (c[:, :, 1] << shifts[1]) | (c[:, :, 2] << shifts[2]) \
        | (c[:, :, 3] << shifts[3])
    scales = rng.uniform(0.5, 2.0, (m, k // scale_block)).astype(np.float32)
    w = TernaryWeight("test.w", m, k, codes.reshape(m, k // 4), shifts, scales, scale_block, tensor_scale)
    return w, tern


def run(w: TernaryWeight, scheme: str, x: np.ndarray, fn) -> np.ndarray:
    pa = tm.pack_activations(aq.quantize(scheme, x), w.plane_shifts)
    y = np.zeros((x.shape[0], w.out_features), np.float32)
    fn(w, pa, y)
    return y


@pytest.mark.parametrize("scheme", aq.SCHEMES)
@pytest.mark.parametrize("shifts", [I2S_PLANE_SHIFTS, TQ2_PLANE_SHIFTS])
@pytest.mark.parametrize("per_block", [True, False])
# 1: decode (row quads); 3: a pair and an overlapping pair; 8: six and a pair; 21: three sixes and pairs
@pytest.mark.parametrize("t", [1, 3, 8, 21])
def test_numba_equals_numpy(scheme: str, shifts: tuple, per_block: bool, t: int) -> None:
    rng = np.random.default_rng(hash((scheme, shifts, per_block, t)) % 2**32)
    k = 2560 if per_block else 768  # 2560 = 20 groups: more than one int16 flush per sub-block
    # 70 rows: a second, partial row tile
    w, _ = make_weight(rng, 70, k, shifts, 256 if per_block else k, tensor_scale=0.75)
    x = (rng.standard_normal((t, k)) * 3).astype(np.float32)
    y_np = run(w, scheme, x, tm.ternary_matmul_numpy)
    y_simd = run(w, scheme, x, tm.ternary_matmul_numba)  # the VNNI / AVX2 kernel where the CPU has it
    y_avx2 = run(w, scheme, x, lambda *a: tm.ternary_matmul_numba(*a, use_vnni=False))
    y_portable = run(w, scheme, x, lambda *a: tm.ternary_matmul_numba(*a, use_simd=False))
    assert np.array_equal(y_np, y_portable)
    assert np.array_equal(y_np, y_simd)
    assert np.array_equal(y_np, y_avx2)


@pytest.mark.parametrize("scheme", aq.SCHEMES)
def test_twin_matches_plain_integer_matmul(scheme: str) -> None:
    rng = np.random.default_rng(5)
    k, m = 512, 33
    w, tern = make_weight(rng, m, k, I2S_PLANE_SHIFTS, k)
    x = rng.standard_normal((4, k)).astype(np.float32)
    qa = aq.quantize(scheme, x)
    y = run(w, scheme, x, tm.ternary_matmul_numpy)
    if scheme == "q8_k":
        isum = np.einsum("tbk,mbk->tmb", qa.q.astype(np.int64).reshape(4, 2, 256),
                         tern.astype(np.int64).reshape(m, 2, 256))
        want = (isum * qa.scales[:, None, :].astype(np.float64)).sum(-1) * w.block_scales[:, 0]
    else:  # bitnet.cpp: float32(float32(isum) / a) * w_scale
        isum = qa.q.astype(np.int64) @ tern.astype(np.int64).T
        want = (isum.astype(np.float32) / qa.scales).astype(np.float32) * w.block_scales[:, 0]
    tol = 1e-6 * np.abs(want).max()
    assert np.abs(y - want).max() <= (0 if scheme == "i8_s" else tol)


@pytest.mark.parametrize("t", [1, 5])
def test_strided_tq2_block_view(t: int) -> None:
    """Codes can be a [out, K/256, 64] view that skips the 2-byte d of each TQ2_0 block."""
    rng = np.random.default_rng(6)
    m, k = 12, 512
    w, _ = make_weight(rng, m, k, TQ2_PLANE_SHIFTS, 256)
    blocks = np.zeros((m, k // 256, 66), np.uint8)
    blocks[:, :, :64] = w.codes.reshape(m, k // 256, 64)
    strided = TernaryWeight(w.name, m, k, blocks[:, :, :64], w.plane_shifts, w.block_scales, 256)
    x = rng.standard_normal((t, k)).astype(np.float32)
    want = run(w, "q8_k", x, tm.ternary_matmul_numpy)
    assert np.array_equal(run(strided, "q8_k", x, tm.ternary_matmul_numba), want)
    portable = run(strided, "q8_k", x, lambda *a: tm.ternary_matmul_numba(*a, use_simd=False))
    assert np.array_equal(portable, want)


def test_rejects_mismatched_plane_order() -> None:
    rng = np.random.default_rng(7)
    w, _ = make_weight(rng, 8, 256, I2S_PLANE_SHIFTS, 256)
    pa = tm.pack_activations(aq.quantize("i8_s", np.ones((1, 256), np.float32)), TQ2_PLANE_SHIFTS)
    with pytest.raises(ValueError, match="plane shifts"):
        tm.ternary_matmul_numba(w, pa, np.zeros((1, 8), np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("t", [1, 3, 9])  # 9: two token quads and one token alone (F16 tiles)
def test_dense_numba_close_to_numpy(dtype: type, t: int) -> None:
    rng = np.random.default_rng(8)
    w = rng.standard_normal((301, 256)).astype(dtype)
    w[0, :4] = [0.0, -0.0, 6e-8, -3e-5]  # zero and fp16 subnormals
    x = rng.standard_normal((t, 256)).astype(np.float32)
    a = np.zeros((t, 301), np.float32)
    b = np.zeros((t, 301), np.float32)
    tm.dense_matmul_numba(w, x, a)
    tm.dense_matmul_numpy(w, x, b)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    assert np.abs(a - exact).max() < 1e-4 and np.abs(b - exact).max() < 1e-4


def test_f16_lm_head_row_results_do_not_depend_on_the_other_rows() -> None:
    # 301 rows: the last 4-row tile repeats its last row; each row's result must be the one it gets
    # as part of any slice (the tiles never mix rows), and the odd K falls back to the plain kernel.
    rng = np.random.default_rng(9)
    w = rng.standard_normal((301, 320)).astype(np.float16)
    x = rng.standard_normal((6, 320)).astype(np.float32)
    full = np.zeros((6, 301), np.float32)
    tm.dense_matmul_numba(w, x, full)
    part = np.zeros((6, 7), np.float32)
    tm.dense_matmul_numba(np.ascontiguousarray(w[294:]), x, part)
    assert np.array_equal(full[:, 294:], part)
    odd = np.zeros((6, 301), np.float32)
    tm.dense_matmul_numba(np.ascontiguousarray(w[:, :300]), np.ascontiguousarray(x[:, :300]), odd)
    np.testing.assert_allclose(odd, x[:, :300] @ w[:, :300].astype(np.float32).T, rtol=1e-4, atol=1e-4)
