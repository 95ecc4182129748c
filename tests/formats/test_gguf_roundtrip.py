"""Writer -> reader round trips for every type, and the byte layouts checked against FORMATS.md."""

from __future__ import annotations

import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf_test_files import rewritten, tiny_config, write_tiny
from tritium.core.formats.ggml_dequant import dequantize
from tritium.core.formats.ggml_encode import TernaryMatrix, encode_tensor
from tritium.core.formats.gguf_model import read_gguf_model
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.gguf_writer import TensorPlan, write_gguf
from tritium.core.formats.runtime_layout import pack_tq2_codes
from tritium.core.formats.synthetic_weights import SyntheticBitNetWeights
from tritium.core.model.weights import I2S_PLANE_SHIFTS, TQ2_PLANE_SHIFTS, DenseWeight, TernaryWeight

LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def _layer_linears(m, i=0):
    layer = m.weights.layers[i]
    return dict(zip(LINEARS, (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down),
                    strict=True))


@pytest.mark.parametrize("ttype", ["TQ1_0", "TQ2_0", "I2_S"])
def test_ternary_types_decode_to_exactly_the_values_and_scales_written(tmp_path, ttype):
    cfg = tiny_config("bitnet-b1.58" if ttype == "I2_S" else "bitnet", n_ff=512)
    path = write_tiny(tmp_path / "m.gguf", ttype, config=cfg, seed=3)
    src = SyntheticBitNetWeights(cfg, 3)
    m = read_gguf_model(path)
    assert m.config.act_quant == ("i8_s" if ttype == "I2_S" else "q8_k")
    assert m.config.ffn_act == ("relu2" if ttype == "I2_S" else "silu")
    for ln, w in _layer_linears(m).items():
        want = src[f"blk.0.{ln}.weight"]
        assert isinstance(w, TernaryWeight) and isinstance(want, TernaryMatrix)
        assert w.codes.dtype == np.uint8 and w.codes.shape == (w.out_features, w.in_features // 4)
        assert np.array_equal(w.ternary(), want.values), ln
        assert w.tensor_scale == 1.0
        if ttype == "I2_S":
            assert w.plane_shifts == I2S_PLANE_SHIFTS and w.scale_block == w.in_features
            assert np.shares_memory(w.codes, m.file.mm)
            assert np.all(w.block_scales == np.float32(want.scale))
        else:
            assert w.plane_shifts == TQ2_PLANE_SHIFTS and w.scale_block == 256
            assert w.codes.flags.c_contiguous and not np.shares_memory(w.codes, m.file.mm)
            # d is the block absmax: the scale wherever the block has a nonzero weight
            nonzero = np.abs(want.values).reshape(w.out_features, -1, 256).max(axis=2) > 0
            assert np.all(w.block_scales[nonzero] == np.float32(want.scale))
        raw = m.file.raw(f"blk.0.{ln}.weight")
        assert np.array_equal(w.dequantize(), dequantize(raw, ttype, m.file.tensors[f"blk.0.{ln}.weight"].ne))
        assert np.array_equal(w.dequantize(), want.to_float())


def test_tq1_0_and_tq2_0_give_identical_runtime_weights(tmp_path):
    a = read_gguf_model(write_tiny(tmp_path / "a.gguf", "TQ1_0", seed=5))
    b = read_gguf_model(write_tiny(tmp_path / "b.gguf", "TQ2_0", seed=5))
    for (ln, wa), wb in zip(_layer_linears(a).items(), _layer_linears(b).values(), strict=True):
        assert np.array_equal(wa.codes, wb.codes) and np.array_equal(wa.block_scales, wb.block_scales), ln


@pytest.mark.parametrize("ttype", ["TQ1_0", "TQ2_0"])
def test_scale_tensor_form(tmp_path, ttype):
    """llama.cpp's alternative: d = 1 in the blocks and the scale in a `<w>.scale` {1} F32 tensor."""
    fold = read_gguf_model(write_tiny(tmp_path / "fold.gguf", ttype, seed=2))
    sep = read_gguf_model(write_tiny(tmp_path / "sep.gguf", ttype, seed=2, scale_tensors=True))
    assert sep.file.tensors["blk.0.attn_q.scale"].ne == (1,)
    assert any(".scale tensor" in line for line in sep.interpretation)
    for (ln, wf), ws in zip(_layer_linears(fold).items(), _layer_linears(sep).values(), strict=True):
        nonzero = np.abs(ws.ternary()).reshape(ws.out_features, -1, 256).max(axis=2) > 0
        assert np.all(ws.block_scales[nonzero] == 1.0)
        assert ws.tensor_scale == float(wf.block_scales[nonzero][0])
        assert np.array_equal(ws.dequantize(), wf.dequantize()), ln


@pytest.mark.parametrize("ttype", ["F32", "F16", "BF16", "Q8_0"])
def test_dense_linear_and_embedding_types(tmp_path, ttype):
    path = write_tiny(tmp_path / "m.gguf", ttype, embd_type=ttype, with_output=True, seed=4)
    m = read_gguf_model(path)
    src = SyntheticBitNetWeights(m.config, 4, with_output=True)
    assert m.config.act_quant == "none" and not m.config.tie_embeddings
    qtype = GGMLQuantizationType[ttype]
    for ln, w in _layer_linears(m).items():
        name = f"blk.0.{ln}.weight"
        assert isinstance(w, DenseWeight)
        want = gguf_dequantize(encode_tensor(src[name], ttype).reshape(w.out_features, -1), qtype)
        assert np.array_equal(w.dequantize(), want.reshape(w.data.shape)), ln
        np.testing.assert_allclose(w.dequantize(), src[name].to_float(), rtol=0.02,
                                   atol=0.02 * src[name].scale)
        assert np.shares_memory(w.data, m.file.mm) == (ttype in ("F32", "F16"))
    for name, arr in (("token_embd.weight", m.weights.token_embd), ("output.weight", m.weights.output)):
        assert arr.shape == (m.config.n_vocab, m.config.n_embd)
        assert arr.dtype == (np.float16 if ttype == "F16" else np.float32)
        assert np.shares_memory(arr, m.file.mm) == (ttype in ("F32", "F16"))
        # Q8_0 rounds to 1/254 of a 32-block's absmax; the others to <= 2^-8 relative
        np.testing.assert_allclose(arr.astype(np.float32), src[name], rtol=2**-8,
                                   atol=float(np.abs(src[name]).max()) / 254 * 1.01)
    assert m.weights.lm_head is m.weights.output


@pytest.mark.parametrize("ttype", ["F32", "F16", "BF16", "Q8_0", "TQ1_0", "TQ2_0"])
def test_reference_decoders_agree_with_gguf_py(ttype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    if ttype.startswith("TQ"):
        x = np.clip(np.rint(x), -1, 1) * np.float32(0.375)
        x[0, :256] = 0  # an all-zero block (d = 0)
    raw = encode_tensor(x, ttype)
    ours = dequantize(raw, ttype, (512, 8))
    theirs = gguf_dequantize(raw.reshape(8, -1), GGMLQuantizationType[ttype])
    assert np.array_equal(ours, theirs.reshape(8, 512))


def test_tq2_0_bytes_follow_formats_md():
    """Byte qs[32h+m], bit pair l holds element 128h+32l+m as q+1; d (fp16) is the last 2 bytes."""
    rng = np.random.default_rng(1)
    q = rng.integers(-1, 2, size=(3, 256)).astype(np.int8)
    q[:, 0] = 1
    raw = encode_tensor(TernaryMatrix(q, 0.5), "TQ2_0").reshape(3, 66)
    assert np.all(raw[:, 64:66].copy().view("<f2") == np.float16(0.5))
    for h in range(2):
        for l in range(4):
            for m in range(32):
                got = (raw[:, 32 * h + m] >> (2 * l)) & 3
                assert np.array_equal(got.astype(np.int8) - 1, q[:, 128 * h + 32 * l + m])


def test_tq1_0_bytes_follow_formats_md():
    """Trits t = q+1; v = sum t_n 3^(4-n); byte = ceil(v*256/243); element orders as in FORMATS.md."""
    rng = np.random.default_rng(2)
    q = rng.integers(-1, 2, size=(2, 256)).astype(np.int8)
    q[:, 0] = -1
    raw = encode_tensor(TernaryMatrix(q, 0.25), "TQ1_0").reshape(2, 54)
    t = q.astype(np.int64) + 1

    def byte(digits):
        v = sum(int(d) * 3 ** (4 - n) for n, d in enumerate(digits))
        return -(-v * 256 // 243)

    for r in range(2):
        for m in range(32):
            assert raw[r, m] == byte([t[r, 32 * n + m] for n in range(5)])
        for m in range(16):
            assert raw[r, 32 + m] == byte([t[r, 160 + 16 * n + m] for n in range(5)])
        for m in range(4):
            assert raw[r, 48 + m] == byte([t[r, 240 + 4 * n + m] for n in range(4)] + [0])
    assert np.all(raw[:, 52:54].copy().view("<f2") == np.float16(0.25))


def test_i2s_bytes_follow_formats_md():
    """Blocks of 128 row-major values; byte j: value j in bits 7-6, 32+j in 5-4, 64+j in 3-2, 96+j in 1-0;
    the float32 scale at K*M/4, then 28 zero bytes."""
    rng = np.random.default_rng(3)
    q = rng.integers(-1, 2, size=(4, 256)).astype(np.int8)
    raw = encode_tensor(TernaryMatrix(q, 0.125), "I2_S")
    assert raw.nbytes == 4 * 256 // 4 + 32
    flat = q.reshape(-1).astype(np.int64) + 1
    for b in range(flat.size // 128):
        for j in range(32):
            v = flat[128 * b:128 * b + 128]
            assert raw[32 * b + j] == (v[j] << 6) | (v[32 + j] << 4) | (v[64 + j] << 2) | v[96 + j]
    assert raw[256:260].view("<f4")[0] == np.float32(0.125) and not raw[260:].any()
    # bitnet.cpp's float quantizer: scale = max|w|, sign codes
    assert np.array_equal(encode_tensor(q.astype(np.float32) * np.float32(0.125), "I2_S"), raw)


def test_pack_tq2_codes_matches_tq2_0_file_codes():
    rng = np.random.default_rng(4)
    q = rng.integers(-1, 2, size=(5, 512)).astype(np.int8)
    raw = encode_tensor(TernaryMatrix(q, 1.0), "TQ2_0").reshape(5, 2, 66)
    assert np.array_equal(pack_tq2_codes(q), raw[:, :, :64].reshape(5, 128))


def test_metadata_value_types_round_trip(tmp_path):
    md = {
        "t.u8": 200, "t.i8": -100, "t.u16": 60000, "t.i16": -30000, "t.u32": 4_000_000_000,
        "t.i32": -2_000_000_000, "t.f32": 0.5, "t.bool": True, "t.str": "héllo ▁w", "t.u64": 2**60,
        "t.i64": -(2**60), "t.f64": 1e-300, "t.arr_f32": [1.5, -2.0], "t.arr_str": ["a", "", "▁b"],
        "t.arr_bool": [True, False], "t.arr_u64": [1, 2**63], "t.nested": [[1, 2], [3]],
    }
    types = {"t.u8": "u8", "t.i8": "i8", "t.u16": "u16", "t.i16": "i16", "t.u32": "u32", "t.i32": "i32",
             "t.f32": "f32", "t.bool": "bool", "t.str": "string", "t.u64": "u64", "t.i64": "i64",
             "t.f64": "f64", "t.arr_f32": "array[f32]", "t.arr_str": "array[string]",
             "t.arr_bool": "array[bool]", "t.arr_u64": "array[u64]", "t.nested": "array[array]"}
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    plan = TensorPlan("x", (3, 4), "F32", lambda: x.reshape(-1).view(np.uint8))
    write_gguf(tmp_path / "m.gguf", "test", md, [plan], value_types=types, alignment=64)
    f = read_gguf(tmp_path / "m.gguf")
    assert f.alignment == 64 and f.data_offset % 64 == 0 and f.metadata["general.alignment"] == 64
    for k, v in md.items():
        assert f.metadata[k] == v, k
        assert f.value_types[k] == types[k], k
    assert f.metadata["general.architecture"] == "test"
    view = f.array("x")
    assert np.array_equal(view, x) and np.shares_memory(view, f.mm) and not view.flags.writeable


@pytest.mark.parametrize("etype", ["Q4_K", "Q6_K"])
def test_k_quant_embedding_is_dequantized_once(tmp_path, etype):
    """llama-quantize stores token_embd of TQ1_0/TQ2_0 models as Q4_K; it is read as float32 once."""
    src = write_tiny(tmp_path / "src.gguf", "TQ2_0")
    cfg = read_gguf_model(src).config
    qtype = GGMLQuantizationType[etype]
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(6)
    raw = rng.integers(0, 256, size=(cfg.n_vocab, cfg.n_embd // block, size), dtype=np.uint8)
    d = np.float16(0.01).tobytes()  # finite fp16 super-block scales: Q4_K d, dmin first; Q6_K d last
    if etype == "Q4_K":
        raw[:, :, 0:2] = np.frombuffer(d, np.uint8)
        raw[:, :, 2:4] = np.frombuffer(d, np.uint8)
    else:
        raw[:, :, size - 2:] = np.frombuffer(d, np.uint8)
    flat = raw.reshape(-1)
    plan = TensorPlan("token_embd.weight", (cfg.n_vocab, cfg.n_embd), etype, lambda: flat)
    m = read_gguf_model(rewritten(src, tmp_path / "q.gguf", tensors={"token_embd.weight": plan}))
    want = gguf_dequantize(raw.reshape(cfg.n_vocab, -1), qtype)
    assert m.weights.token_embd.dtype == np.float32 and np.array_equal(m.weights.token_embd, want)
    assert any(f"token_embd.weight {etype}: dequantized" in line for line in m.interpretation)
    assert m.config.extra["token_embd_type"] == etype
