"""Activation quantizers: numba kernels vs numpy twins, and both vs the peers' formulas written out."""

from __future__ import annotations

import numpy as np
import pytest
from tritium.core.compute import act_quant as aq


def _inputs(rng: np.random.Generator, t: int, k: int) -> np.ndarray:
    x = (rng.standard_normal((t, k)) * rng.uniform(0.01, 10, (t, 1))).astype(np.float32)
    x[0, :256] = 0.0  # an all-zero q8_k block
    x[1, 5] = 1e-7  # a tiny value and a row whose max is negative
    x[1] = -np.abs(x[1])
    x[2, :] = np.float32(0.5) / np.float32(127) * np.arange(-k // 2, k // 2)  # many rounding ties
    return x


@pytest.mark.parametrize("scheme", aq.SCHEMES)
def test_numba_equals_numpy(scheme: str) -> None:
    rng = np.random.default_rng(1)
    x = _inputs(rng, 9, 768)
    a = aq.quantize(scheme, x, use_numba=True)
    b = aq.quantize(scheme, x, use_numba=False)
    assert np.array_equal(a.q, b.q)
    assert np.array_equal(a.scales, b.scales)


def _nearest_int(f: np.float32) -> int:
    """ggml's nearest_int: add 1.5*2^23 in float32 and read the low mantissa bits."""
    v = np.float32(f) + np.float32(12582912.0)
    i = int(np.array([v], np.float32).view(np.int32)[0])
    return (i & 0x007FFFFF) - 0x00400000


def test_q8_k_matches_ggml_scalar_loop() -> None:
    rng = np.random.default_rng(2)
    x = _inputs(rng, 3, 512)
    qa = aq.quantize("q8_k", x, use_numba=True)
    for t in range(3):
        for b in range(2):
            blk = x[t, b * 256:(b + 1) * 256]
            amax, mx = np.float32(0), np.float32(0)
            for v in blk:
                if abs(v) > amax:
                    amax, mx = abs(v), v
            if amax == 0:
                assert qa.scales[t, b] == 0 and not qa.q[t, b * 256:(b + 1) * 256].any()
                continue
            iscale = np.float32(-127.0) / mx
            want = [min(127, _nearest_int(np.float32(iscale * v))) for v in blk]
            assert qa.q[t, b * 256:(b + 1) * 256].tolist() == want
            assert qa.scales[t, b] == np.float32(1.0) / iscale


def test_i8_s_matches_bitnetcpp_formula() -> None:
    rng = np.random.default_rng(3)
    x = _inputs(rng, 4, 640)
    qa = aq.quantize("i8_s", x, use_numba=True)
    amax = np.maximum(np.abs(x.astype(np.float64)).max(-1), 1e-5)
    s = (127.0 / amax).astype(np.float32)
    want = np.clip(np.rint(x * s[:, None]), -128, 127).astype(np.int8)
    assert np.array_equal(qa.q, want)
    assert np.array_equal(qa.scales[:, 0], s)


def test_absmax_token_matches_transformers_formula() -> None:
    rng = np.random.default_rng(4)
    x = _inputs(rng, 4, 256)
    qa = aq.quantize("absmax_token", x, use_numba=True)
    s = np.float32(127.0) / np.maximum(np.abs(x).max(-1), np.float32(1e-5))
    want = np.clip(np.round(x * s[:, None]), -128, 127).astype(np.int8)
    assert np.array_equal(qa.q, want)
    assert np.allclose(aq.dequantize(qa), x, atol=np.abs(x).max() / 127)


def test_q8_k_rejects_width_not_multiple_of_256() -> None:
    with pytest.raises(ValueError, match="K % 256"):
        aq.quantize("q8_k", np.zeros((1, 640), np.float32))
