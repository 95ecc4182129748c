"""The ternary quantizer plugin's kernels: numba == numpy twin == the origin's bytes."""

from __future__ import annotations

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize
from tritium.core.formats.ggml_dequant import i2s_codes
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.tl1_layout import ternary_from_tl1, tl1_trits
from tritium.plugins.quantizer_ternary import (
    f16_kernels,
    i2s_kernels,
    ternary_encode,
    tl1_kernels,
    tq_kernels,
)
from tritium.plugins.quantizer_ternary.engine import Options, check_options, quantize_tensor
from tritium.plugins.quantizer_ternary.ternarize import (
    row_stats_numba,
    row_stats_numpy,
    ternarize_numpy,
    ternary_scales,
)

from tests.conftest import BITNETCPP_FIXTURES


def _floats(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    x = rng.normal(0, 0.02, shape).astype(np.float32)
    x[0, :256] = 0.0  # an all-zero block: d = 0
    x[1, 3] = x[1, :256].__abs__().max() * 0.5  # exact half of the block max: roundf tie (away from zero)
    return x


def _ternary(rng: np.random.Generator, shape: tuple[int, int], s: float) -> np.ndarray:
    return (rng.integers(-1, 2, shape).astype(np.float32) * np.float32(s)).astype(np.float32)


@pytest.mark.parametrize("qtype, numba_fn, numpy_fn", [
    ("TQ2_0", tq_kernels.encode_tq2_0_numba, tq_kernels.encode_tq2_0_numpy),
    ("TQ1_0", tq_kernels.encode_tq1_0_numba, tq_kernels.encode_tq1_0_numpy),
])
def test_tq_bytes_equal_gguf_quants(qtype, numba_fn, numpy_fn):
    rng = np.random.default_rng(1)
    for x in (_floats(rng, (24, 512)), _ternary(rng, (8, 768), 0.0173)):
        ref = np.ascontiguousarray(gguf_quantize(x, GGMLQuantizationType[qtype])).reshape(-1).view(np.uint8)
        got = numba_fn(x)
        assert got.dtype == np.uint8 and got.shape == ref.shape
        assert np.array_equal(got, ref)
        assert np.array_equal(numpy_fn(x), ref)


def test_tq_rejects_rows_not_multiple_of_256():
    with pytest.raises(ValueError, match="multiple of 256"):
        tq_kernels.encode_tq2_0_numba(np.zeros((2, 128), np.float32))


def _fixture_i2s_tensors(path):
    f = read_gguf(path)
    return [(t, f.raw(n)) for n, t in f.tensors.items() if t.type.name == "I2_S"]


@pytest.mark.parametrize("fixture", ["bitnet-b158-tiny", "bitnet-gqa-tiny"])
def test_i2s_reproduces_bitnetcpp_codes_and_scale(fixture):
    tensors = _fixture_i2s_tensors(BITNETCPP_FIXTURES / f"{fixture}.i2_s.gguf")
    assert len(tensors) == 14
    for t, raw in tensors:
        K, M = t.ne
        codes, scale = i2s_codes(raw, t.ne)
        w = ((codes.astype(np.float32) - 1) * scale).astype(np.float32)  # decoded ternary x scale
        n = K * M // 4
        for fn in (i2s_kernels.encode_i2s_numba, i2s_kernels.encode_i2s_numpy):
            out = fn(w)
            assert out.shape == (n + 32,)
            assert np.array_equal(out[:n], raw[:n]), t.name  # code bytes, byte for byte
            assert out[n:n + 4].tobytes() == raw[n:n + 4].tobytes(), t.name  # float32 scale, exactly
            assert not out[n + 4:].any()  # padding: zero here (uninitialised in bitnet.cpp's files)


def test_tl1_twins_and_decode_roundtrip():
    rng = np.random.default_rng(3)
    x = _ternary(rng, (48, 256), 0.031)
    a = tl1_kernels.encode_tl1_numba(x)
    assert np.array_equal(a, tl1_kernels.encode_tl1_numpy(x))
    assert a.shape == (48 * 256 // 4 + 32,)
    t = np.sign(x).astype(np.int8)
    assert np.array_equal(tl1_trits(a, 48, 256), t)
    # nibble code: byte 0 of the first tile row = pairs (x0, x1), (x2, x3)
    assert a[0] >> 4 == 3 * t[0, 0] + t[0, 1] + 4 and a[0] & 15 == 3 * t[0, 2] + t[0, 3] + 4
    w = ternary_from_tl1("w", a, (256, 48))
    assert np.array_equal(w.ternary(), t)
    assert np.array_equal(w.dequantize(), t.astype(np.float32) * np.float32(0.031))


def test_row_stats_twins_one_read():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.05, (32, 256)).astype(np.float32)
    x[3] = 0.0  # all-zero row: nonzero min is +inf
    x[4, ::3] = 0.0
    x[5] = np.where(rng.random(256) < 0.5, 0.0, np.float32(0.25) * np.sign(x[5]))  # ternary row
    x[6, 7] = -0.0
    got, want = row_stats_numba(x), row_stats_numpy(x)
    assert np.allclose(got[0], want[0], rtol=1e-12)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    assert got[2][3] == np.inf and got[1][3] == 0 and got[1][5] == got[2][5] == np.float32(0.25)
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[9, 100] = bad
        assert not np.isfinite(row_stats_numba(y)[0][9]) and np.isfinite(row_stats_numba(y)[0][8])


def test_absmean_matches_transformers_math():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.05, (32, 256)).astype(np.float32)
    inv, scale, was = ternary_scales(x, per_channel=False)
    assert not was
    mean = np.float32(np.abs(x).astype(np.float64).mean())
    assert inv[0] == np.float32(1.0) / mean and scale[0] == np.float32(1.0) / inv[0]
    out = np.empty_like(x)
    sse = ternarize_numpy(x, inv, scale, scale, out)
    assert np.array_equal(out, np.clip(np.rint(x * inv[0]), -1, 1) * scale[0])
    assert np.allclose(sse, ((x.astype(np.float64) - out) ** 2).sum(axis=1))


def test_already_ternary_keeps_values_and_scale():
    rng = np.random.default_rng(5)
    s = np.float32(0.0123)
    x = _ternary(rng, (16, 256), s)
    inv, scale, was = ternary_scales(x, per_channel=False)
    assert was and scale[0] == s
    out = np.empty_like(x)
    assert ternarize_numpy(x, inv, scale, scale, out).sum() == 0.0
    assert np.array_equal(out, x)
    # absmean of the same values would change the scale (not idempotent): we must not use it
    assert np.float32(np.abs(x).mean()) != s
    # per channel: every row its own magnitude
    rows = x * np.linspace(1, 2, 16, dtype=np.float32)[:, None]
    inv, scale, was = ternary_scales(rows, per_channel=True)
    assert was and np.array_equal(scale, np.abs(rows).max(axis=1))


def _two_step(type_name: str, t: np.ndarray) -> np.ndarray:
    """The reference bytes: the origin's encoder applied to the ternarized tensor T * scale."""
    if type_name in ("TQ1_0", "TQ2_0"):
        q = gguf_quantize(t, GGMLQuantizationType[type_name])
        return np.ascontiguousarray(q).reshape(-1).view(np.uint8)
    return {"I2_S": i2s_kernels.encode_i2s_numpy, "TL1": tl1_kernels.encode_tl1_numpy}[type_name](t)


def _fused_cases(rng: np.random.Generator):
    x = _floats(rng, (48, 512))
    x[5, :] = 0.0  # an all-zero row
    yield "float", x, False
    yield "float per-channel", x * np.linspace(0.5, 3, 48, dtype=np.float32)[:, None], True
    yield "ternary", _ternary(rng, (32, 768), 0.0173), False
    rows = _ternary(rng, (16, 256), 1.0) * np.linspace(0.01, 0.02, 16, dtype=np.float32)[:, None]
    yield "ternary per-channel", rows.astype(np.float32), True
    yield "all zero", np.zeros((16, 256), np.float32), False
    # kept ternary with a scale below bitnet.cpp's 1e-6 threshold: I2_S / TL1 code every value as 0
    yield "tiny scale", _ternary(rng, (16, 256), 5e-7), False


@pytest.mark.parametrize("type_name", ["TQ2_0", "TQ1_0", "I2_S", "TL1"])
def test_fused_pass_equals_ternarize_then_encode(type_name):
    rng = np.random.default_rng(6)
    for label, x, per_channel in _fused_cases(rng):
        if per_channel and type_name in ("I2_S", "TL1"):
            continue
        inv, scale, _ = ternary_scales(x, per_channel=per_channel)
        t = np.empty_like(x)
        ternarize_numpy(x, inv, scale, scale, t)
        want = _two_step(type_name, t)
        decoded_scale = scale.astype(np.float16).astype(np.float32) if type_name.startswith("TQ") else scale
        if type_name in ("I2_S", "TL1") and scale[0] < 1e-6:
            decoded_scale = np.zeros_like(scale)
        ref_sse = ternarize_numpy(x, inv, scale, decoded_scale, np.empty_like(x))
        for impl in ("numba", "numpy"):
            got, sse, nnz = ternary_encode.encode_ternary(type_name, x, inv, scale, impl=impl)
            assert got.dtype == np.uint8 and got.shape == want.shape, (label, impl)
            assert np.array_equal(got, want), (label, impl, np.flatnonzero(got != want)[:8])
            assert np.allclose(sse, ref_sse, rtol=1e-5, atol=1e-30), (label, impl)
            assert np.array_equal(nnz, (t != 0).sum(axis=1)), (label, impl)


def test_base3_byte_by_multiply_and_shift_is_exact():
    n = np.arange(243, dtype=np.int64)
    assert np.array_equal(((n * 256 + 242) * 69043) >> 24, (n * 256 + 242) // 243)
    # the largest numerator the identity must hold for is 242 * 256 + 242; check all of them
    k = np.arange(242 * 256 + 243, dtype=np.int64)
    assert np.array_equal((k * 69043) >> 24, k // 243)


def test_engine_rejects_non_finite_with_its_position():
    x = np.zeros((256, 256), np.float32)
    x[17, 3] = np.nan
    with pytest.raises(ValueError, match=r"blk.0.attn_q.weight: non-finite value nan at \[17, 3\]"):
        quantize_tensor("blk.0.attn_q.weight", x, Options("TQ2_0"))


def test_f16_bits_equal_numpy_astype_on_every_exponent():
    rng = np.random.default_rng(8)
    u = rng.integers(0, 2**32, 1 << 16, dtype=np.uint64).astype(np.uint32)
    # around each float16 rounding point: ties, one below, one above, at every exponent (subnormals too)
    e = np.arange(0x60, 0x49 + 0x30, dtype=np.uint32)[:, None]
    low = np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x2FFF, 0x3000, 0x7FEFFF, 0x7FF000, 0x7FFFFF], np.uint32)
    sub = (np.uint32(1) << np.arange(24, dtype=np.uint32))  # subnormal ties lose up to 24 bits
    edges = (e << 23 | np.concatenate([low, sub, sub - 1, sub + 1])[None, :]).reshape(-1)
    u = np.concatenate([u, edges, edges | np.uint32(0x80000000)])
    u = u[(u & 0x7F800000) != 0x7F800000]  # finite only (the engine refuses the others)
    x = u[: len(u) // 256 * 256].view(np.float32).reshape(-1, 256)
    with np.errstate(over="ignore"):
        got, sse, bad = f16_kernels.encode_f16(x)
        want, sse_np, _ = f16_kernels.encode_f16(x, impl="numpy")
        assert np.array_equal(got, x.astype(np.float16).view(np.uint8).reshape(-1))
    assert np.array_equal(got, want)
    fin = np.isfinite(sse_np)
    assert np.allclose(sse[fin], sse_np[fin], rtol=1e-9) and not bad.any()
    y = x.copy()
    y[3, 4] = np.inf
    assert f16_kernels.encode_f16(y)[2][3] == 1


def test_group_size_is_checked_and_recorded_but_does_not_change_ternary_values():
    assert check_options(Options("TQ2_0")) == []
    warnings = check_options(Options("TQ2_0", group_size=64))
    assert len(warnings) == 1 and "group_size 64 does not change TQ2_0 values" in warnings[0]
    x = np.random.default_rng(9).normal(0, 0.02, (16, 256)).astype(np.float32)
    a = quantize_tensor("blk.0.attn_q.weight", x, Options("TQ2_0", group_size=64)).data
    assert np.array_equal(a, quantize_tensor("blk.0.attn_q.weight", x, Options("TQ2_0")).data)
    assert "Q8_0 blocks are 32 values" in check_options(Options("I2_S", group_size=128, quant_embd=True))[-1]


@pytest.mark.parametrize("type_name", ["TQ2_0", "TQ1_0", "I2_S", "TL1", "F16"])
def test_payload_is_written_into_a_given_buffer(type_name):
    from tritium.plugins.quantizer_ternary.engine import payload_nbytes

    x = np.random.default_rng(14).normal(0, 0.02, (32, 256)).astype(np.float32)
    want = quantize_tensor("blk.0.attn_q.weight", x, Options(type_name))
    buf = np.full(payload_nbytes(type_name, x.shape), 0xAB, np.uint8)
    got = quantize_tensor("blk.0.attn_q.weight", x, Options(type_name), out=buf)
    assert got.data is buf and np.array_equal(buf, want.data) and got.mse == want.mse
    with pytest.raises(ValueError, match="needs uint8"):
        quantize_tensor("blk.0.attn_q.weight", x, Options(type_name), out=buf[:-1])
