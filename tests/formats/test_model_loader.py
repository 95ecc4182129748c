"""`load_model` on GGUF files: the LoadedModel it returns (config, weights, tokenizer, tensors, notes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gguf_test_files import BITNETCPP_FIXTURES, FIXTURE_NAMES, write_tiny
from tritium.core.model.loader import LoadedModel, TensorInfo, load_model


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_load_bitnetcpp_fixture(name):
    path = BITNETCPP_FIXTURES / f"{name}.i2_s.gguf"
    ref = json.loads((BITNETCPP_FIXTURES / f"{name}.ref.json").read_text())
    m = load_model(str(path))
    assert isinstance(m, LoadedModel) and m.format == "gguf" and m.path == path
    assert m.config.act_quant == "i8_s" and m.config.n_vocab == 400
    assert m.metadata["general.file_type"] == 40
    assert all(isinstance(t, TensorInfo) for t in m.tensors) and len(m.tensors) == 24
    q = next(t for t in m.tensors if t.name == "blk.0.attn_q.weight")
    assert (q.type_name, q.ggml_shape, q.nbytes) == ("I2_S", (256, 256), 256 * 256 // 4 + 32)
    assert path.read_bytes()[q.offset + q.nbytes - 32:q.offset + q.nbytes - 28] == \
        np.float32(m.weights.layers[0].wq.block_scales[0, 0]).tobytes()  # offset is absolute
    assert any("type id 36" in line for line in m.interpretation)
    # the tokenizer comes from the same metadata and reproduces llama.cpp's tokenization of the prompt
    assert m.tokenizer.n_vocab == 400
    assert m.tokenizer.encode(ref["prompt"]) == ref["prompt_token_ids"]


@pytest.mark.parametrize("ttype", ["TQ1_0", "TQ2_0"])
def test_load_llamacpp_bitnet_file(tmp_path, ttype):
    m = load_model(write_tiny(tmp_path / "m.gguf", ttype))
    assert m.config.arch == "bitnet" and m.config.ffn_act == "silu" and m.config.act_quant == "q8_k"
    assert m.config.n_head_kv == 2 and m.config.tie_embeddings and m.weights.output is None
    assert m.tokenizer.n_vocab == m.config.n_vocab == 300
    assert m.weights.keep_alive  # the memory map the views point into
