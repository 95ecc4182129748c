"""The core's check of each quantized tensor: numba decoders == the reference decoders of core/formats,
measured reconstruction error, and `kept_ternary` decided on the decoded output."""

from __future__ import annotations

import numpy as np
import pytest
from tritium.core.quantize.decode_kernels import decode_ternary, decode_ternary_numpy
from tritium.core.quantize.errors import QuantizeError
from tritium.core.quantize.verify import check_tensor
from tritium.plugins.quantizer_ternary.engine import Options, quantize_tensor

TYPES = ["TQ2_0", "TQ1_0", "I2_S", "TL1"]
NAME = "blk.0.ffn_up.weight"


def _ternary(rng, shape, s):
    return rng.integers(-1, 2, shape).astype(np.float32) * np.float32(s)


@pytest.mark.parametrize("type_name", TYPES)
def test_numba_decoders_equal_the_reference_decoders(type_name):
    rng = np.random.default_rng(10)
    x = rng.normal(0, 0.02, (64, 512)).astype(np.float32)
    x[3, :256] = 0.0  # an all-zero TQ block: d = 0
    for opts in (Options(type_name), Options(type_name, per_channel=type_name.startswith("TQ"))):
        raw = quantize_tensor(NAME, x, opts).data
        got = decode_ternary(type_name, raw, 64, 512)
        assert np.array_equal(got, decode_ternary_numpy(type_name, raw, 64, 512))


@pytest.mark.parametrize("type_name", [*TYPES, "F16"])
def test_error_is_measured_on_the_output(type_name):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 0.02, (32, 256)).astype(np.float32)
    q = quantize_tensor(NAME, x, Options(type_name))
    c = check_tensor(type_name, q.data, x, claims_ternary=False)
    y = decode_ternary_numpy(type_name, q.data, 32, 256) if type_name != "F16" else \
        x.astype(np.float16).astype(np.float32)
    want = np.sqrt(((y.astype(np.float64) - x) ** 2).mean())
    assert c.rmse == pytest.approx(want, rel=1e-9)
    assert c.rel_error == pytest.approx(want / np.sqrt((x.astype(np.float64) ** 2).mean()), rel=1e-9)
    assert c.kept_ternary is None
    assert c.rmse == pytest.approx(np.sqrt(q.mse), rel=1e-5)  # the plugin's own figure agrees


@pytest.mark.parametrize("type_name", [*TYPES, "F16"])
def test_kept_ternary_is_checked_on_the_decoded_values(type_name):
    rng = np.random.default_rng(12)
    x = _ternary(rng, (32, 256), 0.0173)
    x[7] = 0.0  # an all-zero row is kept too
    raw = quantize_tensor(NAME, x, Options(type_name)).data
    c = check_tensor(type_name, raw, x, claims_ternary=True)
    assert c.kept_ternary is True and c.rows_not_kept == 0
    if type_name == "F16":
        return
    # a ternary source with two magnitudes: per tensor, the plugin re-absmeans it, so it is not kept
    y = x.copy()
    y[2] *= 2
    raw_y = quantize_tensor(NAME, y, Options(type_name)).data
    assert check_tensor(type_name, raw_y, y, claims_ternary=True).kept_ternary is False
    # an output that changed one value's sign, or the scale, is caught
    t = np.sign(x)
    flip = np.argwhere(t != 0)[5]
    bad = x.copy()
    bad[tuple(flip)] *= -1
    c = check_tensor(type_name, quantize_tensor(NAME, bad, Options(type_name)).data, x, claims_ternary=True)
    assert c.kept_ternary is False and c.rows_not_kept == 1
    scaled = x * np.float32(1.5)
    c = check_tensor(type_name, quantize_tensor(NAME, scaled, Options(type_name)).data, x,
                     claims_ternary=True)
    assert c.kept_ternary is False and c.rows_not_kept == 31


def test_payload_of_the_wrong_size_is_an_error():
    x = np.zeros((16, 256), np.float32)
    raw = quantize_tensor(NAME, x, Options("TQ2_0")).data
    with pytest.raises(QuantizeError, match=r"TQ2_0 payload of 1055 bytes, expected 1056 for \[16, 256\]"):
        check_tensor("TQ2_0", raw[:-1], x, claims_ternary=False)
