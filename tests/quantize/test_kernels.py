"""The ternary quantizer plugin's kernels: numba == numpy twin == the origin's bytes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BITNETCPP_FIXTURES
from gguf.constants import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize
from tritium.core.formats.ggml_dequant import i2s_codes
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.tl1_layout import ternary_from_tl1, tl1_trits
from tritium.plugins.quantizer_ternary import i2s_kernels, tl1_kernels, tq_kernels
from tritium.plugins.quantizer_ternary.ternarize import (
    row_stats_numba,
    row_stats_numpy,
    ternarize_numba,
    ternarize_numpy,
    ternary_scales,
)


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


def test_ternarize_twins_and_absmean_matches_transformers_math():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.05, (32, 256)).astype(np.float32)
    for a, b in zip(row_stats_numba(x), row_stats_numpy(x), strict=True):
        assert np.allclose(a, b, rtol=1e-12)
    inv, scale, was = ternary_scales(x, per_channel=False)
    assert not was
    mean = np.float32(np.abs(x).astype(np.float64).mean())
    assert inv[0] == np.float32(1.0) / mean and scale[0] == np.float32(1.0) / inv[0]
    out1, out2 = np.empty_like(x), np.empty_like(x)
    s1 = ternarize_numba(x, inv, scale, scale, out1)
    s2 = ternarize_numpy(x, inv, scale, scale, out2)
    assert np.array_equal(out1, out2) and np.allclose(s1, s2, rtol=1e-9)
    assert np.array_equal(out1, np.clip(np.rint(x * inv[0]), -1, 1) * scale[0])


def test_already_ternary_keeps_values_and_scale():
    rng = np.random.default_rng(5)
    s = np.float32(0.0123)
    x = _ternary(rng, (16, 256), s)
    inv, scale, was = ternary_scales(x, per_channel=False)
    assert was and scale[0] == s
    out = np.empty_like(x)
    assert ternarize_numba(x, inv, scale, scale, out).sum() == 0.0
    assert np.array_equal(out, x)
    # absmean of the same values would change the scale (not idempotent): we must not use it
    assert np.float32(np.abs(x).mean()) != s
    # per channel: every row its own magnitude
    rows = x * np.linspace(1, 2, 16, dtype=np.float32)[:, None]
    inv, scale, was = ternary_scales(rows, per_channel=True)
    assert was and np.array_equal(scale, np.abs(rows).max(axis=1))
