"""tq1_0/tq2_0 files written by `tritium quantize` load in real llama.cpp and give Tritium's logits.

Needs the `[bench]` extra (llama-cpp-python); skipped without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from tritium.core.compute import Runtime
from tritium.core.model.loader import load_model
from tritium.core.quantize.convert import quantize_model
from tritium.core.quantize.options import QuantizeOptions
from tritium.core.quantize.plugin_quantizer import PluginQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_quantize_model import TOKENS  # noqa: E402, I001
from tiny_models import make_hf_folder  # noqa: E402, I001

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.peer


def _llamacpp_logits(path: Path, tokens: list[int]) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_ubatch=64, n_threads=1,
                          n_threads_batch=1, logits_all=True, type_k=0, type_v=0, flash_attn=False,
                          verbose=False)
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


@pytest.mark.parametrize("quant_type", ["tq2_0", "tq1_0"])
def test_llamacpp_gives_tritiums_logits_on_quantized_output(tmp_path, quant_type):
    folder = tmp_path / "hf"
    make_hf_folder(folder, "online", act="silu", seed=3)  # llama.cpp's bitnet graph is SiLU-gated
    out = tmp_path / f"m.{quant_type}.gguf"
    with PluginQuantizer("ternary") as q:
        quantize_model(folder, out, QuantizeOptions(quant_type=quant_type), quantizer=q, progress=False,
                       evaluate=False)
    model = load_model(out)
    assert model.config.act_quant == "q8_k"
    rt = Runtime(model.config, model.weights, kv_dtype="f32")  # llama.cpp runs with an F32 cache here
    ours = rt.eval(rt.new_sequence(), TOKENS, all_logits=True)
    ref = _llamacpp_logits(out, TOKENS)
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    top2 = np.sort(ref, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.1
    print(f"{quant_type}: max|d| {np.abs(ours - ref).max():.3g} mean|d| {np.abs(ours - ref).mean():.3g} "
          f"min cos {cos.min():.6f}")
    assert cos.min() >= 0.999
    assert (ours.argmax(-1) == ref.argmax(-1))[clear].all()
