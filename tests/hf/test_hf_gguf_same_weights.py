"""The same ternary model as a Hugging Face folder and as a bitnet.cpp I2_S GGUF gives the same logits.

The GGUF is written from the weights Tritium loaded out of the HF fixture (ternary values and per-tensor
scales exactly, embeddings/norms as F32), so the only difference left is the activation-quantization
arithmetic: transformers' fake quant (`absmax_token`: (q/s) @ T * scale) against bitnet.cpp's I8_S
(`i8_s`: integer sum, then / act_scale * scale). Both quantize per token to int8 with absmax, so the
logits agree up to float rounding (and the rare int8 rounding flip that rounding can cause).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_fixtures import HF_FIXTURES, reference  # noqa: E402

compute = pytest.importorskip("tritium.core.compute", reason="the compute runtime is not in the tree yet")
gguf_writer = pytest.importorskip("tritium.core.formats.gguf_writer", reason="no GGUF writer in the tree")
from tritium.core.formats.ggml_encode import TernaryMatrix  # noqa: E402
from tritium.core.formats.hf_model import read_hf_folder  # noqa: E402
from tritium.core.model.loader import load_model  # noqa: E402

GGUF_LINEARS = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
                "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}
GGUF_NORMS = {"attn_norm": "attn_norm", "attn_sub_norm": "attn_sub_norm", "ffn_norm": "ffn_norm",
              "ffn_sub_norm": "ffn_sub_norm"}


def write_as_i2s_gguf(hf_name: str, path: Path) -> None:
    parts = read_hf_folder(HF_FIXTURES / hf_name)
    cfg, w = parts.config, parts.weights
    arch = "bitnet-b1.58" if cfg.ffn_act == "relu2" else "bitnet"  # bitnet.cpp: ReLU^2 vs SiLU graph
    tensors: dict[str, np.ndarray | TernaryMatrix] = {
        "token_embd.weight": np.asarray(w.token_embd, dtype=np.float32),
        "output_norm.weight": w.output_norm,
    }
    if w.output is not None:
        tensors["output.weight"] = np.asarray(w.output, dtype=np.float32)
    for i, layer in enumerate(w.layers):
        for field, gname in GGUF_LINEARS.items():
            tw = getattr(layer, field)
            tensors[f"blk.{i}.{gname}.weight"] = TernaryMatrix(tw.ternary(), float(tw.block_scales[0, 0]))
        for field, gname in GGUF_NORMS.items():
            tensors[f"blk.{i}.{gname}.weight"] = getattr(layer, field)
    gguf_writer.write_bitnet_gguf(path, replace(cfg, arch=arch), tensors, linear_type="I2_S", embd_type="F32",
                                  tokenizer=gguf_writer.spm_test_vocab(cfg.n_vocab), name=hf_name)


@pytest.mark.parametrize("name", ["packed-bf16-gqa-untied", "sharded-bf16-gqa-silu", "online-bf16-mha-tied"])
def test_hf_folder_and_i2s_gguf_of_the_same_weights_agree(tmp_path, name):
    path = tmp_path / f"{name}.i2_s.gguf"
    write_as_i2s_gguf(name, path)
    hf, gg = load_model(HF_FIXTURES / name), load_model(path)
    assert gg.format == "gguf" and hf.format == "hf"
    assert (gg.config.act_quant, hf.config.act_quant) == ("i8_s", "absmax_token")
    for lh, lg in zip(hf.weights.layers, gg.weights.layers, strict=True):
        for field in GGUF_LINEARS:
            a, b = getattr(lh, field), getattr(lg, field)
            np.testing.assert_array_equal(a.ternary(), b.ternary(), err_msg=field)
            np.testing.assert_array_equal(a.dequantize(), b.dequantize(), err_msg=field)

    ids = reference(name)["random_ids"]
    logits = []
    for model in (hf, gg):
        rt = compute.Runtime(model.config, model.weights, threads=2)
        logits.append(rt.eval(rt.new_sequence(), ids, all_logits=True))
    a, b = logits
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    top2 = np.sort(a, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 0.1
    diff = np.abs(a - b)
    print(f"\n{name}: HF vs I2_S GGUF max_abs {diff.max():.3g} mean_abs {diff.mean():.3g} "
          f"min_cos {cos.min():.7f} argmax_agree {(a.argmax(1) == b.argmax(1)).mean():.3f}")
    assert cos.min() >= 0.999
    assert np.all(a.argmax(1)[decisive] == b.argmax(1)[decisive])
