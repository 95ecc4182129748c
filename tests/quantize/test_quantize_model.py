"""`quantize_model` end to end through the real `ternary` plugin process: exactness, serving, bad input."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf.gguf_writer import GGUFWriter
from tritium.core.compute import Runtime
from tritium.core.formats.ggml_dequant import i2s_codes, tq2_0_trits
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.model.loader import load_model
from tritium.core.quantize.cli import quantize_main
from tritium.core.quantize.convert import quantize_model
from tritium.core.quantize.errors import QuantizeError
from tritium.core.quantize.options import QuantizeOptions
from tritium.core.quantize.plugin_quantizer import PluginQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import PROJ, make_hf_folder  # noqa: E402, I001
from hf_checkpoint import read_safetensors_numpy, write_safetensors  # noqa: E402, I001

GGUF_OF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
TOKENS = [318, 116, 257, 271, 309, 261, 309, 32, 266, 258, 280, 309, 300, 12, 77, 190]


@pytest.fixture(scope="module")
def quantizer():
    with PluginQuantizer("ternary") as q:
        yield q


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for form, act in (("packed", "silu"), ("online", "silu"), ("unpacked", "relu2")):
        out[form] = (root / form, make_hf_folder(root / form, form, act=act, seed=len(out)))
    return out


def _convert(src, dst, quantizer, **kw):
    return quantize_model(src, dst, QuantizeOptions(**kw), quantizer=quantizer, progress=False,
                          evaluate=False)


def _logits(path, tokens=TOKENS):
    m = load_model(path)
    rt = Runtime(m.config, m.weights)
    return rt.eval(rt.new_sequence(), tokens, all_logits=True), m


def test_packed_source_keeps_ternary_values_and_scale_exactly(models, quantizer, tmp_path):
    folder, meant = models["packed"]
    reports = [_convert(folder, tmp_path / "i2s.gguf", quantizer, quant_type="i2_s"),
               _convert(folder, tmp_path / "tq2.gguf", quantizer, quant_type="tq2_0")]
    for rep in reports:  # checked by the core on the decoded output
        linear = [r for r in rep.tensors if r.type_out in ("I2_S", "TQ2_0")]
        assert len(linear) == 14 and all(r.kept_ternary is True for r in linear)
        assert all(r.rmse == pytest.approx(r.plugin_rmse, rel=1e-4, abs=1e-12) for r in linear)
        assert not any("did not keep" in n for n in rep.notes)
    fi, ft = read_gguf(tmp_path / "i2s.gguf"), read_gguf(tmp_path / "tq2.gguf")
    for i in range(2):
        for hf, g in GGUF_OF.items():
            w = meant[f"model.layers.{i}.{hf}.weight"]
            s = np.float32(np.abs(w).max())
            t_src = np.sign(w).astype(np.int8)
            name = f"blk.{i}.{g}.weight"
            codes, scale = i2s_codes(fi.raw(name), fi.tensors[name].ne)
            assert scale == s  # the checkpoint's weight_scale, not a re-absmean'd one
            assert np.array_equal(codes.astype(np.int8) - 1, t_src)
            M, K = PROJ[hf]
            t, d = tq2_0_trits(ft.raw(name), M * K // 256)
            assert np.array_equal(t.reshape(M, K), t_src)
            assert np.all(d == np.float32(np.float16(s)))


def test_tq2_0_file_serves_with_logits_of_the_hf_source(models, quantizer, tmp_path):
    folder, _ = models["online"]
    rep = _convert(folder, tmp_path / "tq2.gguf", quantizer, quant_type="tq2_0")
    assert {r.type_out for r in rep.tensors if ".attn_q." in r.name} == {"TQ2_0"}
    for r in rep.tensors:
        if r.type_out == "TQ2_0":  # float master weights: a measured error, no ternary claim
            assert r.kept_ternary is None and 0.3 < r.rel_error < 0.8
            assert r.rmse == pytest.approx(r.plugin_rmse, rel=1e-4)
    ref, m_hf = _logits(folder)
    got, m_q = _logits(tmp_path / "tq2.gguf")
    assert m_hf.config.act_quant == "absmax_token" and m_q.config.act_quant == "q8_k"
    # same ternary weights; only the activation quantization (per token vs per 256) and the fp16 scale
    # differ, so logits agree to a small fraction of their spread
    diff = np.abs(ref - got)
    assert diff.mean() < 0.05 * ref.std(), (diff.mean(), diff.max(), ref.std())
    assert (ref.argmax(-1) == got.argmax(-1)).mean() >= 0.85
    # and the GGUF's own tokenizer encodes like the HF one
    text = "the cat sat on the mat, and then it ran"
    assert m_q.tokenizer.encode(text) == m_hf.tokenizer.encode(text)


def test_tl1_file_serves_identically_to_i2_s(models, quantizer, tmp_path):
    folder, _ = models["unpacked"]
    _convert(folder, tmp_path / "i2s.gguf", quantizer, quant_type="i2_s")
    _convert(folder, tmp_path / "tl1.gguf", quantizer, quant_type="tl1")
    f = read_gguf(tmp_path / "tl1.gguf")
    assert f.metadata["tritium.tl1.layout"] == "tritium-tl1-v1"
    assert f.tensors["blk.0.attn_q.weight"].type.name == "TL1"
    a, _ = _logits(tmp_path / "i2s.gguf")
    b, m = _logits(tmp_path / "tl1.gguf")
    assert m.config.act_quant == "i8_s"
    assert np.array_equal(a, b)


def test_gguf_f16_source_to_tq1_0_keeps_the_ternary_weights(models, quantizer, tmp_path):
    folder, meant = models["packed"]
    _convert(folder, tmp_path / "f16.gguf", quantizer, quant_type="f16")
    _convert(tmp_path / "f16.gguf", tmp_path / "tq1.gguf", quantizer, quant_type="tq1_0")
    m = load_model(tmp_path / "tq1.gguf")
    w = m.weights.layers[1].w_down
    src = meant["model.layers.1.mlp.down_proj.weight"]
    assert np.array_equal(w.ternary(), np.sign(src).astype(np.int8))
    assert np.all(w.block_scales == np.float32(np.float16(np.abs(src).max())))


@pytest.mark.parametrize("kw, needle", [
    ({"quant_type": "tq2_0", "sym": False}, "sym=false cannot be honoured by TQ2_0"),
    ({"quant_type": "i2_s", "per_channel": True}, "per_channel cannot be honoured by I2_S"),
    ({"quant_type": "tq1_0", "group_size": 48}, "group_size 48 does not divide the row length 256"),
])
def test_option_combinations_a_type_cannot_honour(models, quantizer, tmp_path, kw, needle):
    with pytest.raises(QuantizeError, match=needle):
        _convert(models["packed"][0], tmp_path / "x.gguf", quantizer, **kw)
    assert list(tmp_path.iterdir()) == []


def test_bad_sources(models, quantizer, tmp_path):
    with pytest.raises(QuantizeError, match="does not exist"):
        _convert(tmp_path / "nope", tmp_path / "x.gguf", quantizer)
    bad = tmp_path / "corrupt"
    make_hf_folder(bad, "packed")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(QuantizeError, match="model.safetensors"):
        _convert(bad, tmp_path / "x.gguf", quantizer)
    liar = tmp_path / "liar"
    make_hf_folder(liar, "unpacked")  # offline: claims ternary floats + weight_scale
    tensors = read_safetensors_numpy(liar / "model.safetensors")
    dtype, w = tensors["model.layers.1.mlp.up_proj.weight"]
    w = w.copy()
    w[3, 5] = 0.5  # one value that is not -1/0/+1
    tensors["model.layers.1.mlp.up_proj.weight"] = (dtype, w)
    write_safetensors(liar / "model.safetensors", tensors)
    with pytest.raises(QuantizeError, match="not ternary"):
        _convert(liar, tmp_path / "x.gguf", quantizer, quant_type="tq2_0")
    assert not (tmp_path / "x.gguf").exists()


def test_full_disk_leaves_no_output(models, quantizer, tmp_path, monkeypatch):
    dst = tmp_path / "out.gguf"
    dst.write_bytes(b"previous file")
    calls = {"n": 0}
    real = GGUFWriter.write_tensor_data

    def failing(self, tensor, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            self.fout[0].write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, tensor, *a, **k)

    monkeypatch.setattr(GGUFWriter, "write_tensor_data", failing)
    with pytest.raises(QuantizeError, match="disk is full"):
        _convert(models["packed"][0], dst, quantizer, quant_type="tq2_0")
    assert dst.read_bytes() == b"previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]


def test_cli_reports_and_refuses(models, tmp_path, capsys):
    folder, _ = models["packed"]
    rc = quantize_main(["--in", str(folder), "--out", str(tmp_path / "o.gguf"), "--quant-type", "tq2_0",
                        "--report-json", str(tmp_path / "r.json"), "--no-progress", "--eval-tokens", "32"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "blk.0.attn_q.weight" in out and "MB/s" in out and "mean KL" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["bytes_after"] == (tmp_path / "o.gguf").stat().st_size
    assert rep["accuracy"]["n_tokens"] == 32 and rep["accuracy"]["mean_kl"] >= 0
    assert rep["memory_saved"] == rep["bytes_before"] - rep["bytes_after"]
    rc = quantize_main(["--in", str(folder), "--out", str(tmp_path / "p.gguf"), "--quant-type", "tq2_0",
                        "--no-sym", "--no-progress", "--no-eval"])
    assert rc == 2 and "sym=false" in capsys.readouterr().err
    assert not (tmp_path / "p.gguf").exists()
