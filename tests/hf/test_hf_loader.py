"""Loading Hugging Face BitNetForCausalLM folders: every fixture form against what transformers used,
and every kind of bad folder -> ModelFormatError naming the file, tensor or field."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.errors import ModelFormatError
from tritium.core.formats.hf_model import PROJECTIONS, read_hf_folder
from tritium.core.formats.safetensors_reader import bf16_to_float32

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_checkpoint import bf16_round, pack_hf, read_safetensors_numpy, unpack_hf  # noqa: E402
from hf_fixtures import (  # noqa: E402
    HF_FIXTURES,
    NAMES,
    all_tensors,
    copy_fixture,
    derive_f32_master,
    derive_unpacked_ternary,
    edit_config,
    reference,
    rewrite_weights,
)


def ternary_sha(w) -> str:
    return hashlib.sha256(np.ascontiguousarray(w.ternary(), dtype=np.int8).tobytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_config_and_the_ternary_weights_transformers_used(name):
    parts = read_hf_folder(HF_FIXTURES / name)
    cfg, ref = parts.config, reference(name)
    raw = json.loads((HF_FIXTURES / name / "config.json").read_text())
    assert (cfg.n_vocab, cfg.n_embd, cfg.n_ff, cfg.n_layer) == (
        raw["vocab_size"], raw["hidden_size"], raw["intermediate_size"], raw["num_hidden_layers"])
    n_head = raw["num_attention_heads"]
    assert (cfg.n_head, cfg.n_head_kv, cfg.head_dim) == (n_head, raw["num_key_value_heads"],
                                                         raw["hidden_size"] // n_head)
    assert cfg.rope_base == raw["rope_theta"] and cfg.rms_eps == raw["rms_norm_eps"]
    assert cfg.ffn_act == {"relu2": "relu2", "silu": "silu"}[raw["hidden_act"]]
    assert cfg.act_quant == "absmax_token" and cfg.arch == "BitNetForCausalLM"
    assert cfg.tie_embeddings is raw["tie_word_embeddings"]
    assert cfg.bos_token_id == raw["bos_token_id"] and set(cfg.eos_token_ids) == set(raw["eos_token_id"])

    w = parts.weights
    assert len(w.layers) == cfg.n_layer
    assert w.token_embd.shape == (cfg.n_vocab, cfg.n_embd)
    assert (w.output is None) == cfg.tie_embeddings
    assert w.lm_head.shape == (cfg.n_vocab, cfg.n_embd)
    for i, layer in enumerate(w.layers):
        linears = layer.linears()
        for module, field in PROJECTIONS.items():
            peer = ref["projections"][f"model.layers.{i}.{module}"]
            tw = linears[field]
            assert tw.codes.dtype == np.uint8 and tw.codes.shape == (tw.out_features, tw.in_features // 4)
            assert ternary_sha(tw) == peer["ternary_sha256"], f"layer {i} {module}: differs from transformers"
            scale = float(tw.block_scales[0, 0])
            assert np.all(tw.block_scales == tw.block_scales[0, 0]) and tw.scale_block == tw.in_features
            # online: our float64-accumulated mean vs torch's compiled float32 reduction, 1 ulp apart at most
            assert scale == pytest.approx(peer["scale"], rel=2.5e-7), f"layer {i} {module}"
        for norm in (layer.attn_norm, layer.attn_sub_norm, layer.ffn_norm):
            assert norm.dtype == np.float32 and norm.shape == (cfg.n_embd,)
        assert layer.ffn_sub_norm.shape == (cfg.n_ff,)


@pytest.mark.parametrize("name", NAMES)
def test_float_tensors_keep_their_exact_values(name):
    parts = read_hf_folder(HF_FIXTURES / name)
    tensors = all_tensors(HF_FIXTURES / name)

    def as_f32(key: str) -> np.ndarray:
        dtype, a = tensors[key]
        return bf16_to_float32(a) if dtype == "BF16" else a.astype(np.float32)

    w = parts.weights
    embd = np.asarray(w.token_embd, dtype=np.float32)
    np.testing.assert_array_equal(embd, as_f32("model.embed_tokens.weight"))
    np.testing.assert_array_equal(w.output_norm, as_f32("model.norm.weight"))
    np.testing.assert_array_equal(w.layers[1].ffn_sub_norm, as_f32("model.layers.1.mlp.ffn_sub_norm.weight"))
    if w.output is not None:
        np.testing.assert_array_equal(np.asarray(w.output, dtype=np.float32), as_f32("lm_head.weight"))


def test_packed_weights_decode_to_the_stored_ternary_matrix():
    name = "packed-bf16-gqa-untied"
    parts = read_hf_folder(HF_FIXTURES / name)
    tensors = all_tensors(HF_FIXTURES / name)
    for i, layer in enumerate(parts.weights.layers):
        for module, field in PROJECTIONS.items():
            packed = tensors[f"model.layers.{i}.{module}.weight"][1]
            np.testing.assert_array_equal(layer.linears()[field].ternary(), unpack_hf(packed))
            ws = bf16_to_float32(tensors[f"model.layers.{i}.{module}.weight_scale"][1])[0]
            assert layer.linears()[field].block_scales[0, 0] == ws


def test_legacy_bitlinear_scale_is_the_inverse_of_weight_scale():
    tensors = all_tensors(HF_FIXTURES / "bitlinear-f32-mha-tied")
    layer = read_hf_folder(HF_FIXTURES / "bitlinear-f32-mha-tied").weights.layers[0]
    ws = tensors["model.layers.0.self_attn.q_proj.weight_scale"][1][0]
    assert ws > 1  # 1/mean|W| for the legacy class
    assert layer.wq.block_scales[0, 0] == np.float32(1.0) / np.float32(ws)


def test_load_model_returns_an_hf_loaded_model_with_tokenizer_and_tensor_table():
    from tritium.core.model.loader import load_model

    name = "sharded-bf16-gqa-silu"
    model = load_model(HF_FIXTURES / name)
    ref = reference(name)
    assert model.format == "hf" and model.config.n_layer == 2
    assert model.tokenizer.encode(ref["prompt"]) == ref["prompt_ids"]
    assert model.config.add_bos is True
    names = {t.name for t in model.tensors}
    assert names == set(all_tensors(HF_FIXTURES / name))
    q = next(t for t in model.tensors if t.name == "model.layers.1.self_attn.q_proj.weight")
    assert q.type_name == "U8" and q.ggml_shape == (128, 32) and q.nbytes == 32 * 128
    assert any("sharded" in line for line in model.interpretation)
    assert model.metadata["config.json"]["model_type"] == "bitnet"


def test_f32_and_f16_embeddings_are_memory_mapped_views(tmp_path):
    w = read_hf_folder(HF_FIXTURES / "bitlinear-f32-mha-tied").weights
    assert w.token_embd.dtype == np.float32 and not w.token_embd.flags.writeable
    folder = copy_fixture("packed-bf16-gqa-untied", tmp_path)
    tensors = all_tensors(folder)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[key] = ("F16", bf16_to_float32(tensors[key][1]).astype(np.float16))
    rewrite_weights(folder, tensors)
    parts = read_hf_folder(folder)
    assert parts.weights.token_embd.dtype == np.float16 and not parts.weights.token_embd.flags.writeable
    assert parts.weights.output.dtype == np.float16
    assert any("F16 memory-mapped" in line for line in parts.interpretation)


def _same_runtime_weights(a, b) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):
        for field, wa in la.linears().items():
            wb = lb.linears()[field]
            np.testing.assert_array_equal(wa.codes, wb.codes, err_msg=field)
            np.testing.assert_array_equal(wa.block_scales, wb.block_scales, err_msg=field)


def test_f32_master_gives_the_same_runtime_weights_as_bf16_master(tmp_path):
    a = read_hf_folder(HF_FIXTURES / "online-bf16-mha-tied")
    b = read_hf_folder(derive_f32_master(tmp_path))
    _same_runtime_weights(a.weights, b.weights)
    assert a.config == b.config


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("name", ["packed-bf16-gqa-untied", "sharded-bf16-gqa-silu"])
def test_unpacked_ternary_checkpoint_equals_packed(tmp_path, name, dtype):
    a = read_hf_folder(HF_FIXTURES / name)
    parts = read_hf_folder(derive_unpacked_ternary(name, tmp_path, dtype))
    _same_runtime_weights(a.weights, parts.weights)
    assert any("unpacked ternary" in line for line in parts.interpretation)


def test_online_master_ternarized_then_packed_offline_gives_the_same_weights(tmp_path):
    """Our own absmean ternarization, saved as a packed autobitlinear checkpoint, round-trips."""
    online = read_hf_folder(HF_FIXTURES / "online-bf16-mha-tied")
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    tensors = all_tensors(folder)
    for i, layer in enumerate(online.weights.layers):
        for module, field in PROJECTIONS.items():
            w = layer.linears()[field]
            tensors[f"model.layers.{i}.{module}.weight"] = ("U8", pack_hf(w.ternary()))
            tensors[f"model.layers.{i}.{module}.weight_scale"] = ("F32", w.block_scales[:1, 0].copy())
    rewrite_weights(folder, tensors)
    qc = json.loads((folder / "config.json").read_text())["quantization_config"]
    edit_config(folder, quantization_config={**qc, "quantization_mode": "offline"})
    _same_runtime_weights(online.weights, read_hf_folder(folder).weights)


def test_tied_checkpoint_with_a_stray_lm_head_ignores_it(tmp_path):
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    tensors = all_tensors(folder)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    rewrite_weights(folder, tensors)
    parts = read_hf_folder(folder)
    assert parts.weights.output is None
    assert any("lm_head.weight is present but tie_word_embeddings is true" in x for x in parts.interpretation)


def test_absent_fields_take_bitnet_config_defaults(tmp_path):
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    edit_config(folder, rope_theta=..., rms_norm_eps=..., max_position_embeddings=...)
    parts = read_hf_folder(folder)
    assert parts.config.rope_base == 500000.0 and parts.config.rms_eps == 1e-5 and parts.config.n_ctx == 2048
    assert any("rms_norm_eps" in line and "defaults" in line for line in parts.interpretation)


def test_rope_parameters_form_and_rope_scaling_default_are_accepted(tmp_path):
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    edit_config(folder, rope_theta=..., rope_parameters={"rope_type": "default", "rope_theta": 1234.0})
    assert read_hf_folder(folder).config.rope_base == 1234.0
    edit_config(folder, rope_parameters=..., rope_theta=99.0, rope_scaling={"type": "default"})
    assert read_hf_folder(folder).config.rope_base == 99.0


# ------------------------------------------------------------------------------------------ bad input

BAD_CONFIGS = [
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "'model_type': expected 'bitnet'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "'rope_scaling'.*'linear' is not supported"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "'rope_parameters'.*'yarn' is not supported"),
    ({"rope_theta": "big"}, "'rope_theta': expected a positive finite number"),
    ({"rope_theta": float("inf")}, "'rope_theta': expected a positive finite number"),
    ({"attention_bias": True}, "'attention_bias': expected false"),
    ({"hidden_act": "gelu"}, "'hidden_act': expected one of"),
    ({"head_dim": 48}, "'head_dim': expected hidden_size / num_attention_heads"),
    ({"num_key_value_heads": 3}, "'num_key_value_heads': expected a divisor"),
    ({"hidden_size": "128"}, "'hidden_size': expected a positive integer, found '128'"),
    ({"num_hidden_layers": 0}, "'num_hidden_layers': expected a positive integer"),
    ({"tie_word_embeddings": "yes"}, "'tie_word_embeddings': expected true or false"),
    ({"rms_norm_eps": -1}, "'rms_norm_eps': expected a positive finite number"),
    ({"num_hidden_layers": 10**9}, "'num_hidden_layers': expected 2 \\(the blocks model.layers.N"),
    ({"eos_token_id": "x"}, "'eos_token_id': expected a token id"),
    ({"quantization_config": ...}, "quantization_config: missing"),
    ({"quantization_config": {"quant_method": "gptq"}}, "'quant_method': expected 'bitnet'"),
    ({"quantization_config": {"quant_method": "bitnet", "linear_class": "foo"}}, "'linear_class'"),
    ({"quantization_config": {"quant_method": "bitnet", "quantization_mode": "lazy"}}, "'quantization_mode'"),
    ({"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                              "quantization_mode": "online", "use_rms_norm": True}}, "'use_rms_norm'"),
    ({"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                              "quantization_mode": "online",
                              "modules_to_not_convert": ["lm_head", "q_proj"]}},
     "keeps model.layers.0.self_attn.q_proj in float"),
    ({"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                              "quantization_mode": "online", "modules_to_not_convert": ["model.layers.1"]}},
     "keeps model.layers.1.self_attn.q_proj in float"),
    ({"vocab_size": 300}, "'model.embed_tokens.weight': shape \\[320, 128\\], expected \\[300, 128\\]"),
    ({"intermediate_size": 384}, "'model.layers.0.mlp.gate_proj.weight': shape \\[256, 128\\], expected"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_CONFIGS)
def test_bad_or_unsupported_config_is_a_model_format_error(tmp_path, changes, message):
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(ModelFormatError, match=message) as exc:
        read_hf_folder(folder)
    assert str(folder) in str(exc.value)


def test_explicit_modules_to_not_convert_without_lm_head_is_rejected_when_untied(tmp_path):
    folder = copy_fixture("packed-bf16-gqa-untied", tmp_path)
    edit_config(folder, quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                             "modules_to_not_convert": ["embed_tokens"]})
    with pytest.raises(ModelFormatError, match="does not exclude lm_head"):
        read_hf_folder(folder)


def test_missing_or_broken_config_json(tmp_path):
    from tritium.core.model.loader import load_model

    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    (folder / "config.json").write_text("{broken")
    with pytest.raises(ModelFormatError, match="config.json: not valid JSON"):
        read_hf_folder(folder)
    (folder / "config.json").write_text("[1]")
    with pytest.raises(ModelFormatError, match="config.json: expected a JSON object"):
        read_hf_folder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelFormatError, match="config.json: missing"):
        read_hf_folder(folder)
    with pytest.raises(ModelFormatError, match="config.json"):
        load_model(folder)
    with pytest.raises(ModelFormatError, match="not a directory"):
        read_hf_folder(tmp_path / "nowhere")


def _break(tmp_path: Path, name: str, edit) -> Path:
    folder = copy_fixture(name, tmp_path)
    tensors = all_tensors(folder)
    edit(tensors)
    rewrite_weights(folder, tensors)
    return folder


def _set(key: str, dtype: str, value: np.ndarray):
    return lambda t: t.__setitem__(key, (dtype, value))


Q0 = "model.layers.0.self_attn.q_proj"
BAD_WEIGHTS = [
    ("online-bf16-mha-tied", lambda t: t.pop("model.layers.1.mlp.down_proj.weight"),
     "'model.layers.1.mlp.down_proj.weight' is missing"),
    ("online-bf16-mha-tied", lambda t: t.pop("model.norm.weight"), "'model.norm.weight' is missing"),
    ("online-bf16-mha-tied", _set(f"{Q0}.weight", "F32", np.zeros((128, 64), np.float32)),
     f"'{Q0}.weight': shape \\[128, 64\\], expected \\[128, 128\\] from config.json"),
    ("online-bf16-mha-tied", _set("model.norm.weight", "I32", np.zeros(128, np.int32)),
     "'model.norm.weight': dtype I32, expected one of"),
    ("online-bf16-mha-tied", _set(f"{Q0}.weight", "U8", np.zeros((32, 128), np.uint8)),
     "packed U8 \\[32, 128\\] but quantization_mode is 'online'"),
    ("online-bf16-mha-tied", _set(f"{Q0}.weight", "F32", np.full((128, 128), np.nan, np.float32)),
     f"'{Q0}.weight': non-finite values"),
    ("online-bf16-mha-tied", _set("model.layers.0.self_attn.q_proj.bias", "F32", np.zeros(128, np.float32)),
     "unexpected tensors .*'model.layers.0.self_attn.q_proj.bias'"),
    ("packed-bf16-gqa-untied", _set(f"{Q0}.weight", "U8", np.full((64, 256), 0xFF, np.uint8)),
     f"'{Q0}.weight': packed byte \\[0, 0\\] holds code 3"),
    ("packed-bf16-gqa-untied", lambda t: t.pop(f"{Q0}.weight_scale"), f"'{Q0}.weight_scale' is missing"),
    ("packed-bf16-gqa-untied", _set(f"{Q0}.weight_scale", "F32", np.ones(2, np.float32)),
     f"'{Q0}.weight_scale': shape \\[2\\], expected \\[1\\]"),
    ("packed-bf16-gqa-untied", _set(f"{Q0}.weight_scale", "F32", np.zeros(1, np.float32)),
     f"'{Q0}.weight_scale': scale 0.0, expected a finite positive number"),
    ("packed-bf16-gqa-untied", _set(f"{Q0}.weight", "F32", np.full((256, 256), 0.5, np.float32)),
     f"'{Q0}.weight': value 0.5 at \\[0, 0\\] is not ternary"),
    ("packed-bf16-gqa-untied", _set(f"{Q0}.weight", "I8", np.zeros((64, 256), np.int8)),
     f"'{Q0}.weight': dtype I8, expected one of"),
    ("packed-bf16-gqa-untied", lambda t: t.pop("lm_head.weight"),
     "'lm_head.weight' is missing but config.json sets tie_word_embeddings false"),
    ("bitlinear-f32-mha-tied", _set(f"{Q0}.weight", "F32", np.zeros((128, 128), np.float32)),
     f"'{Q0}.weight': dtype F32, expected one of \\('U8',\\) \\(packed U8 \\[out/4, in\\] for bitlinear"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BAD_WEIGHTS)
def test_bad_weights_are_model_format_errors_naming_the_tensor(tmp_path, name, edit, message):
    folder = _break(tmp_path, name, edit)
    with pytest.raises(ModelFormatError, match=message) as exc:
        read_hf_folder(folder)
    assert str(folder) in str(exc.value)


def test_in_features_not_a_multiple_of_128_is_rejected(tmp_path):
    folder = copy_fixture("online-bf16-mha-tied", tmp_path)
    rng = np.random.default_rng(0)
    H, F, V = 64, 128, 320
    t = {"model.embed_tokens.weight": ("F32", rng.normal(size=(V, H)).astype(np.float32)),
         "model.norm.weight": ("F32", np.ones(H, np.float32))}
    shapes = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H, H), "self_attn.v_proj": (H, H),
              "self_attn.o_proj": (H, H), "mlp.gate_proj": (F, H), "mlp.up_proj": (F, H),
              "mlp.down_proj": (H, F)}
    for i in range(2):
        for m, s in shapes.items():
            t[f"model.layers.{i}.{m}.weight"] = ("F32", bf16_round(rng.normal(size=s).astype(np.float32)))
    rewrite_weights(folder, t)
    edit_config(folder, hidden_size=H, intermediate_size=F, num_attention_heads=2, num_key_value_heads=2)
    with pytest.raises(ModelFormatError, match="in_features 64 is not a multiple of 128"):
        read_hf_folder(folder)


def test_sharded_folder_with_a_lying_shard_header(tmp_path):
    folder = copy_fixture("sharded-bf16-gqa-silu", tmp_path)
    shard = folder / "model-00002-of-00002.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[8:8 + 200] = raw[8:8 + 200].replace(b'"data_offsets":[0,', b'"data_offsets":[4,')
    shard.write_bytes(bytes(raw))
    with pytest.raises(ModelFormatError, match="model-00002-of-00002.safetensors: safetensors header: "):
        read_hf_folder(folder)


def test_sharded_index_naming_a_missing_shard(tmp_path):
    folder = copy_fixture("sharded-bf16-gqa-silu", tmp_path)
    (folder / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="shard 'model-00001-of-00002.safetensors'.*does not exist"):
        read_hf_folder(folder)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
CONFIG_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta",
               "rope_parameters", "rope_scaling", "tie_word_embeddings", "attention_bias", "bos_token_id",
               "eos_token_id", "model_type", "architectures", "quantization_config",
               "max_position_embeddings"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(CONFIG_KEYS), value=JSON_VALUES)
def test_fuzzed_config_values_raise_only_model_format_error(tmp_path_factory, key, value):
    folder = tmp_path_factory.mktemp("fuzz") / "m"
    folder.mkdir()
    src = HF_FIXTURES / "bitlinear-f32-mha-tied"
    (folder / "model.safetensors").symlink_to(src / "model.safetensors")
    cfg = json.loads((src / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    try:
        read_hf_folder(folder)
    except ModelFormatError:
        pass


def test_reader_ignores_other_files_in_the_folder(tmp_path):
    folder = copy_fixture("bitlinear-f32-mha-tied", tmp_path)
    (folder / "README.md").write_text("hello")
    (folder / "extra.safetensors").write_bytes(b"junk")
    parts = read_hf_folder(folder)
    assert len(parts.checkpoint.files) == 1
    assert set(read_safetensors_numpy(folder / "model.safetensors")) == set(parts.checkpoint.owner)
