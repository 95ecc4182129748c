"""TL1 lookup-table matmul: numba kernel == numpy twin == plain ternary dot product, bit for bit the I2_S
path on the same weights, and the kernel Tritium serves TL1 files with (tiles read in place)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from tritium.core.compute import Runtime
from tritium.core.compute import act_quant as aq
from tritium.core.compute import ternary_matmul as tm
from tritium.core.compute.reference import reference_forward
from tritium.core.compute.tl1_lut import TOKEN_CHUNK, pair_luts_numpy, tl1_matmul_numba, tl1_matmul_numpy
from tritium.core.errors import ModelFormatError
from tritium.core.formats.runtime_layout import ternary_from_i2s
from tritium.core.formats.tl1_layout import tl1_weight
from tritium.core.model.loader import load_model
from tritium.core.model.weights import TL1Weight
from tritium.plugins.quantizer_ternary.i2s_kernels import encode_i2s_numpy
from tritium.plugins.quantizer_ternary.tl1_kernels import encode_tl1_numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quantize"))
from tiny_models import make_hf_folder  # noqa: E402, I001


def tl1_and_i2s(rng: np.random.Generator, m: int, k: int, scale: float = 0.5):
    """The same ternary matrix (values -1/0/+1, times `scale`) as a TL1Weight and an I2_S TernaryWeight."""
    tern = rng.integers(-1, 2, (m, k)).astype(np.int8)
    tern[0, :] = 1  # a row of +1s and one of -1s: the largest sums
    tern[-1, :] = -1
    x = tern.astype(np.float32) * np.float32(scale)
    w = tl1_weight("test.tl1", encode_tl1_numpy(x), (k, m))
    return w, ternary_from_i2s("test.i2s", encode_i2s_numpy(x), (k, m)), tern


def activations(rng: np.random.Generator, t: int, k: int) -> np.ndarray:
    q = rng.integers(-128, 128, (t, k)).astype(np.int8)
    q[0, : k // 2] = -128  # extremes: table entries reach +-256
    return q


@pytest.mark.parametrize("m, k", [(16, 128), (48, 256), (80, 1536), (32, 2560)])
@pytest.mark.parametrize("t", [1, 3, TOKEN_CHUNK + 5])
def test_lut_kernel_twin_and_plain_dot_agree_exactly(m: int, k: int, t: int) -> None:
    rng = np.random.default_rng(m * 7919 + k + t)
    w, _, tern = tl1_and_i2s(rng, m, k, scale=1.0)
    q = activations(rng, t, k)
    isum = q.astype(np.int64) @ tern.astype(np.int64).T
    ones = np.ones(t, np.float32)
    for fn in (tl1_matmul_numba, tl1_matmul_numpy):  # a = d_w = 1: out holds the exact integer sums
        out = np.full((t, m), np.nan, np.float32)
        fn(w, q, ones, out)
        assert np.array_equal(out.astype(np.int64), isum)
    a = rng.uniform(0.05, 20.0, (t, 1)).astype(np.float32)
    w.block_scales[:] = np.float32(0.0173)
    w.tensor_scale = 0.75
    want = ((isum.astype(np.float32) / a).astype(np.float32) * np.float32(0.0173)) * np.float32(0.75)
    got_nb, got_np = np.zeros((t, m), np.float32), np.zeros((t, m), np.float32)
    tl1_matmul_numba(w, q, a, got_nb)
    tl1_matmul_numpy(w, q, a, got_np)
    assert np.array_equal(got_nb, got_np)
    assert np.array_equal(got_nb, want)


def test_pair_table_is_the_tl1_code() -> None:
    q = np.array([[5, -7, -128, 127]], np.int8)
    lut = pair_luts_numpy(q)
    for t0 in (-1, 0, 1):
        for t1 in (-1, 0, 1):
            assert lut[0, 0, 3 * t0 + t1 + 4] == 5 * t0 - 7 * t1
            assert lut[0, 1, 3 * t0 + t1 + 4] == -128 * t0 + 127 * t1


@pytest.mark.parametrize("scheme", ["i8_s", "absmax_token"])
@pytest.mark.parametrize("t", [1, 7])
def test_tl1_weight_matmul_is_bit_identical_to_i2_s(scheme: str, t: int) -> None:
    rng = np.random.default_rng(11 + t)
    m, k = 96, 768
    w_tl1, w_i2s, _ = tl1_and_i2s(rng, m, k, scale=0.031)
    w_tl1.tensor_scale = w_i2s.tensor_scale = 1.5
    x = (rng.standard_normal((t, k)) * 3).astype(np.float32)
    qa = aq.quantize(scheme, x)
    results = []
    for w, fn in ((w_i2s, tm.ternary_matmul_numba), (w_i2s, tm.ternary_matmul_numpy),
                  (w_tl1, tm.ternary_matmul_numba), (w_tl1, tm.ternary_matmul_numpy)):
        y = np.zeros((t, m), np.float32)
        fn(w, tm.pack_activations(qa, w.plane_shifts), y)
        results.append(y)
    for y in results[1:]:
        assert np.array_equal(y, results[0])


def test_tl1_weight_refuses_q8_k_activations() -> None:
    rng = np.random.default_rng(2)
    w, _, _ = tl1_and_i2s(rng, 16, 256)
    pa = tm.pack_activations(aq.quantize("q8_k", np.ones((1, 256), np.float32)), w.plane_shifts)
    with pytest.raises(ValueError, match="per-token activation scales"):
        tm.ternary_matmul_numba(w, pa, np.zeros((1, 16), np.float32))


def test_tl1_weight_views_the_file_and_checks_every_nibble() -> None:
    rng = np.random.default_rng(3)
    tern = rng.integers(-1, 2, (32, 256)).astype(np.int8)
    raw = encode_tl1_numpy(tern.astype(np.float32))
    w = tl1_weight("blk.0.ffn_up.weight", raw, (256, 32))
    assert w.codes is None and np.shares_memory(w.tiles, raw)
    assert np.array_equal(w.ternary(), tern)
    assert np.array_equal(w.rows(16, 32).ternary(), tern[16:])
    bad = raw.copy()
    bad[100] = 0x9F  # nibbles 9 and 15 are no pair code
    with pytest.raises(ModelFormatError, match="blk.0.ffn_up.weight.*pair index above 8"):
        tl1_weight("blk.0.ffn_up.weight", bad, (256, 32))


@pytest.fixture(scope="module")
def tl1_and_i2s_files(tmp_path_factory):
    from tritium.core.quantize.convert import quantize_model
    from tritium.core.quantize.options import QuantizeOptions
    from tritium.core.quantize.plugin_quantizer import PluginQuantizer

    root = tmp_path_factory.mktemp("tl1")
    make_hf_folder(root / "hf", "unpacked", act="relu2", seed=2)
    with PluginQuantizer("ternary") as quantizer:
        for qt in ("i2_s", "tl1"):
            quantize_model(root / "hf", root / f"{qt}.gguf", QuantizeOptions(quant_type=qt),
                           quantizer=quantizer, progress=False, evaluate=False)
    return root / "i2_s.gguf", root / "tl1.gguf"


def test_tl1_file_is_served_by_the_lut_kernel_bit_identical_to_i2_s(tl1_and_i2s_files, monkeypatch):
    i2s_path, tl1_path = tl1_and_i2s_files
    tokens = [318, 116, 257, 271, 309, 261, 309, 32, 266, 258]
    m_i2s, m_tl1 = load_model(i2s_path), load_model(tl1_path)
    assert m_tl1.config.act_quant == "i8_s"
    linears = [lin for layer in m_tl1.weights.layers for lin in layer.linears().values()]
    # no repacked 2-bit codes: every TL1 matrix is a view of the file's tiles
    assert all(isinstance(lin, TL1Weight) and lin.codes is None and not lin.tiles.flags.owndata
               for lin in linears)
    calls = []

    def counting(w, q, scales, out):  # noqa: ANN001, ANN202
        calls.append(w.name)
        tl1_matmul_numba(w, q, scales, out)

    monkeypatch.setattr(tm, "tl1_matmul_numba", counting)
    rt_i2s, rt_tl1 = Runtime(m_i2s.config, m_i2s.weights), Runtime(m_tl1.config, m_tl1.weights)
    logits = []
    for rt in (rt_i2s, rt_tl1):  # a prefill, then token-by-token decoding
        seq = rt.new_sequence()
        first = rt.eval(seq, tokens[:6], all_logits=True)
        if rt is rt_tl1:
            assert sorted(calls) == sorted(lin.name for lin in linears)  # each matrix once, by the LUT
        logits.append(np.concatenate([first] + [rt.eval(seq, [tok]) for tok in tokens[6:]]))
    assert np.array_equal(logits[0], logits[1])
    # float activations (act_quant "none"): the runtime dequantizes TL1 row ranges of the tiles
    float_logits = []
    for m in (m_i2s, m_tl1):
        rt = Runtime(dataclasses.replace(m.config, act_quant="none"), m.weights)
        float_logits.append(rt.eval(rt.new_sequence(), tokens, all_logits=True))
    assert np.array_equal(float_logits[0], float_logits[1])
    ref_i2s = reference_forward(m_i2s.config, m_i2s.weights, tokens)
    ref_tl1 = reference_forward(m_tl1.config, m_tl1.weights, tokens)  # the numpy twin
    assert np.array_equal(ref_i2s, ref_tl1)
