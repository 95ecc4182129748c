"""Tritium vs llama.cpp (llama-cpp-python) on a tiny TQ2_0 `bitnet` model written by our GGUF writer.

Tritium reproduces llama.cpp's Q8_K activation quantization and its AVX2 TQ2_0 dot product (8 int32
lanes, FMA into float lanes, hsum_float_8), plus the F16 KV / fp16 roundings, so the logits agree to
float32 rounding, not just to the issue's bar. Skipped when llama_cpp is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tritium.core.compute import Runtime
from tritium.core.formats.bitnet_tensors import bitnet_shapes, bitnet_tensor_names
from tritium.core.formats.ggml_encode import TernaryMatrix
from tritium.core.formats.gguf_writer import spm_test_vocab, write_bitnet_gguf
from tritium.core.model.config import ModelConfig
from tritium.core.model.loader import load_model

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.peer

CONFIG = ModelConfig(arch="bitnet", n_vocab=400, n_embd=256, n_layer=2, n_head=8, n_head_kv=2, n_ff=512,
                     n_ctx=256, rope_base=10000.0, ffn_act="silu", act_quant="q8_k")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shapes = bitnet_shapes(CONFIG)
    weights: dict[str, object] = {}
    for i, name in enumerate(bitnet_tensor_names(CONFIG.n_layer)):
        rng = np.random.default_rng([3, i])
        shape = shapes[name]
        if name == "token_embd.weight":
            weights[name] = (rng.standard_normal(shape) * 0.125).astype(np.float16)
        elif len(shape) == 1:
            weights[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            gain = 16.0 if "ffn_down" in name else 0.25 if "attn_output" in name else 1.0
            scale = float(np.float16(gain * 0.8 / np.sqrt(shape[1])))
            weights[name] = TernaryMatrix(rng.integers(-1, 2, shape).astype(np.int8), scale)
    path = tmp_path_factory.mktemp("peer") / "tiny-tq2_0.gguf"
    write_bitnet_gguf(path, CONFIG, weights, linear_type="TQ2_0", tokenizer=spm_test_vocab(CONFIG.n_vocab))
    return path


def _llama(path: Path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_ubatch=128, n_threads=1,
                           n_threads_batch=1, logits_all=True, verbose=False)


def _check(ours: np.ndarray, peer: np.ndarray) -> None:
    cos = (ours * peer).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(peer, axis=1)
    assert cos.min() >= 0.999
    top2 = np.sort(peer, axis=1)[:, -2:]
    sure = top2[:, 1] - top2[:, 0] > 0.1
    assert np.array_equal(ours.argmax(1)[sure], peer.argmax(1)[sure])
    assert np.abs(ours - peer).max() < 1e-3  # float32 rounding level (logit std ~2)


def test_batch_logits_match_llamacpp(model_path: Path) -> None:
    tokens = [1] + np.random.default_rng(0).integers(3, CONFIG.n_vocab, 47).tolist()
    llm = _llama(model_path)
    llm.eval(tokens)
    peer = np.array(llm.scores[:len(tokens)], np.float32)
    m = load_model(model_path)
    assert m.config.act_quant == "q8_k"
    rt = Runtime(m.config, m.weights, threads=1, kv_dtype="f16")
    _check(rt.eval(rt.new_sequence(), tokens, all_logits=True), peer)


def test_greedy_and_incremental_logits_match_llamacpp(model_path: Path) -> None:
    prompt = [1] + np.random.default_rng(1).integers(3, CONFIG.n_vocab, 15).tolist()
    llm = _llama(model_path)
    llm.eval(prompt)
    peer_ids, peer_rows = [], [np.array(llm.scores[len(prompt) - 1], np.float32)]
    for _ in range(32):
        peer_ids.append(int(np.argmax(peer_rows[-1])))
        llm.eval([peer_ids[-1]])
        peer_rows.append(np.array(llm.scores[llm.n_tokens - 1], np.float32))
    m = load_model(model_path)
    rt = Runtime(m.config, m.weights, threads=1, kv_dtype="f16")
    seq = rt.new_sequence()
    rows = [rt.eval(seq, prompt)[0]]
    ids = []
    for _ in range(32):
        ids.append(int(np.argmax(rows[-1])))
        rows.append(rt.eval(seq, [ids[-1]])[0])
    assert ids == peer_ids
    _check(np.stack(rows), np.stack(peer_rows))
