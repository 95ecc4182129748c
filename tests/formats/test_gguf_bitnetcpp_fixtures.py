"""The GGUF reader, model mapper and writer against bitnet.cpp's own I2_S files (tests/fixtures/bitnetcpp)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from gguf_test_files import BITNETCPP_FIXTURES, FIXTURE_NAMES, load_gen_fixtures
from tritium.core.formats.ggml_dequant import dequantize, i2s_codes
from tritium.core.formats.ggml_encode import TernaryMatrix
from tritium.core.formats.gguf_model import read_gguf_model
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.formats.gguf_writer import spm_test_vocab, write_bitnet_gguf
from tritium.core.model.config import ModelConfig
from tritium.core.model.weights import DenseWeight, TernaryWeight

GEN = load_gen_fixtures()


def fixture_path(name: str):
    return BITNETCPP_FIXTURES / f"{name}.i2_s.gguf"


def fixture_config(name: str) -> ModelConfig:
    c = GEN.FIXTURES[name]
    return ModelConfig(arch=c["arch"], n_vocab=c["vocab"], n_embd=c["hidden"], n_layer=c["layers"],
                       n_head=c["heads"], n_head_kv=c["kv_heads"], n_ff=c["ffn"], n_ctx=c["ctx"],
                       rms_eps=c["eps"], rope_base=c["rope_base"])


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_metadata_and_tensor_table(name):
    c = GEN.FIXTURES[name]
    f = read_gguf(fixture_path(name))
    a = c["arch"]
    md = f.metadata
    assert f.version == 3 and f.alignment == 32 and f.data_offset % 32 == 0
    assert md["general.architecture"] == a and md["general.name"] == name
    assert md["general.file_type"] == 40 and f.value_types["general.file_type"] == "u32"
    assert md[f"{a}.embedding_length"] == c["hidden"] and md[f"{a}.feed_forward_length"] == c["ffn"]
    assert md[f"{a}.block_count"] == c["layers"] and md[f"{a}.context_length"] == c["ctx"]
    assert md[f"{a}.attention.head_count"] == c["heads"]
    assert md[f"{a}.attention.head_count_kv"] == c["kv_heads"]
    assert md[f"{a}.attention.layer_norm_rms_epsilon"] == float(np.float32(c["eps"]))
    assert f.value_types[f"{a}.attention.layer_norm_rms_epsilon"] == "f32"
    assert md[f"{a}.rope.freq_base"] == c["rope_base"]
    assert md[f"{a}.rope.dimension_count"] == c["hidden"] // c["heads"]
    assert (f"{a}.rope.scaling.type" in md) == c["rope_scaling"]
    tokens, scores, types = GEN.build_vocab(c["vocab"])
    assert md["tokenizer.ggml.tokens"] == tokens and md["tokenizer.ggml.token_type"] == types
    assert md["tokenizer.ggml.scores"] == scores
    assert f.value_types["tokenizer.ggml.tokens"] == "array[string]"
    assert md["tokenizer.ggml.add_bos_token"] is True and md["tokenizer.ggml.add_eos_token"] is False

    plan = GEN.tensor_plan(c)
    assert list(f.tensors) == [n for n, _, _ in plan]  # file order as documented
    for tname, kind, shape in plan:
        t = f.tensors[tname]
        assert t.shape == shape
        want = {"embd": "F16", "norm": "F32", "tern": "I2_S"}[kind]
        assert t.type.name == want
        if kind == "tern":
            assert t.type.type_id == 36 and t.nbytes == shape[0] * shape[1] // 4 + 32
            assert "I2_S" in t.type.interpretation
    assert any("type id 36" in line and "I2_S" in line for line in f.interpretation)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_i2s_decode_matches_the_generated_weights(name):
    f = read_gguf(fixture_path(name))
    for tname, (kind, v) in GEN.make_weights(GEN.FIXTURES[name]).items():
        t = f.tensors[tname]
        if kind != "tern":
            assert np.array_equal(f.array(tname), v)
            continue
        q, s = v
        codes, scale = i2s_codes(f.raw(tname), t.ne)
        assert set(np.unique(codes).tolist()) <= {0, 1, 2}
        assert float(scale) == s and float(np.float16(scale)) == float(scale)  # fp16-exact scale
        assert np.array_equal(codes.astype(np.int8) - 1, q)
        assert np.array_equal(dequantize(f.raw(tname), "I2_S", t.ne), q.astype(np.float32) * np.float32(s))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_model_mapping(name):
    c = GEN.FIXTURES[name]
    m = read_gguf_model(fixture_path(name))
    cfg = m.config
    assert (cfg.arch, cfg.n_vocab, cfg.n_embd, cfg.n_layer, cfg.n_ff) == (
        c["arch"], c["vocab"], c["hidden"], c["layers"], c["ffn"])
    assert (cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_rot) == (
        c["heads"], c["kv_heads"], c["hidden"] // c["heads"], c["hidden"] // c["heads"])
    assert cfg.ffn_act == ("relu2" if c["arch"] == "bitnet-b1.58" else "silu")
    assert cfg.act_quant == "i8_s" and cfg.tie_embeddings and cfg.fp16_kv_reference
    assert cfg.rope_base == c["rope_base"] and cfg.rms_eps == pytest.approx(1e-5, rel=1e-6)
    assert cfg.bos_token_id == 1 and cfg.eos_token_ids == (2,) and cfg.add_bos
    assert len(m.tensors) == 24 and m.tensors[0].name == "token_embd.weight"
    assert m.tensors[0].ggml_shape == (c["hidden"], c["vocab"]) and m.tensors[0].type_name == "F16"

    w = m.weights
    assert w.output is None and w.lm_head is w.token_embd
    assert w.token_embd.dtype == np.float16 and np.shares_memory(w.token_embd, m.file.mm)
    ref = GEN.make_weights(c)
    for i, layer in enumerate(w.layers):
        for ln, lin in {"attn_q": layer.wq, "attn_k": layer.wk, "attn_v": layer.wv, "attn_output": layer.wo,
                        "ffn_gate": layer.w_gate, "ffn_up": layer.w_up, "ffn_down": layer.w_down}.items():
            q, s = ref[f"blk.{i}.{ln}.weight"][1]
            assert isinstance(lin, TernaryWeight)
            assert lin.codes.shape == (q.shape[0], q.shape[1] // 4) and lin.scale_block == q.shape[1]
            assert np.shares_memory(lin.codes, m.file.mm)  # I2_S codes stay views of the file
            assert np.array_equal(lin.ternary(), q) and np.all(lin.block_scales == np.float32(s))
        assert np.array_equal(layer.ffn_sub_norm, ref[f"blk.{i}.ffn_sub_norm.weight"][1])
    text = "\n".join(m.interpretation)
    assert "i8_s" in text and "tied" in text and "I2_S" in text


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_writer_reproduces_bitnetcpp_i2s_file(name, tmp_path):
    """Our I2_S writer, fed the generator's weights, writes what bitnet.cpp's llama-quantize wrote: the same
    metadata, tensor table and bytes; the only freedom is I2_S's 28 padding bytes after the scale, which
    llama-quantize leaves uninitialized (some are nonzero in these fixtures) and we write as zeros."""
    c = GEN.FIXTURES[name]
    weights = {n: (TernaryMatrix(*v) if kind == "tern" else v)
               for n, (kind, v) in GEN.make_weights(c).items()}
    out = tmp_path / "mine.gguf"
    write_bitnet_gguf(out, fixture_config(name), weights, linear_type="I2_S",
                      tokenizer=spm_test_vocab(c["vocab"]), name=name)
    ours, theirs = read_gguf(out), read_gguf(fixture_path(name))
    assert ours.metadata == theirs.metadata and ours.value_types == theirs.value_types
    assert [(t.name, t.ne, t.type.type_id, t.offset) for t in ours.tensors.values()] == \
        [(t.name, t.ne, t.type.type_id, t.offset) for t in theirs.tensors.values()]
    a = bytearray(out.read_bytes())
    b = bytearray(fixture_path(name).read_bytes())
    assert len(a) == len(b)
    for t in theirs.tensors.values():
        if t.type.name == "I2_S":
            codes_and_scale = t.nbytes - 28
            assert a[t.file_offset:t.file_offset + codes_and_scale] == \
                b[t.file_offset:t.file_offset + codes_and_scale], t.name
            b[t.file_offset + codes_and_scale:t.file_offset + t.nbytes] = bytes(28)
    assert a == b


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_f16_source_gguf_loads_dense_and_equals_i2s(name, tmp_path):
    """gen_fixtures' F16 source (llama-quantize's input) reads as dense weights equal to the I2_S file."""
    ref = json.loads((BITNETCPP_FIXTURES / f"{name}.ref.json").read_text())
    src = tmp_path / "src.f16.gguf"
    GEN.write_f16_gguf(GEN.FIXTURES[name], name, src)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == ref["f16_gguf"]["sha256"]
    dense, i2s = read_gguf_model(src), read_gguf_model(fixture_path(name))
    assert dense.config.act_quant == "none" and dense.config.ffn_act == i2s.config.ffn_act
    for ld, li in zip(dense.weights.layers, i2s.weights.layers, strict=True):
        for k, lin in ld.linears().items():
            assert isinstance(lin, DenseWeight) and lin.data.dtype == np.float16
            assert np.shares_memory(lin.data, dense.file.mm)
            assert np.array_equal(lin.dequantize(), li.linears()[k].dequantize()), k
