"""Tiny Hugging Face BitNet folders for the quantize tests (numpy + tokenizers only, built on the fly):
online float master weights, packed 2-bit + weight_scale, and unpacked ternary + weight_scale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from hf_checkpoint import bf16_round, pack_hf, write_safetensors  # noqa: E402

H, HEADS, KV, F, LAYERS, V = 256, 4, 2, 512, 2, 320
PROJ = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (KV * H // HEADS, H),
        "self_attn.v_proj": (KV * H // HEADS, H), "self_attn.o_proj": (H, H), "mlp.gate_proj": (F, H),
        "mlp.up_proj": (F, H), "mlp.down_proj": (H, F)}
NORMS = {"input_layernorm": H, "self_attn.attn_sub_norm": H, "post_attention_layernorm": H,
         "mlp.ffn_sub_norm": F}
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


def _byte_alphabet() -> list[str]:
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs, strict=True))]


def tokenizer_json() -> str:
    """A byte-level BPE tokenizer.json with V tokens: 256 bytes, merges, then 2 special tokens."""
    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = []
    pairs = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("Ġ", "s"), ("e", "r"),
             ("o", "u"), ("a", "n"), ("Ġ", "w"), ("o", "n"), ("Ġ", "h"), ("r", "e"), ("n", "d")]
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs += [("Ġ", c) for c in letters if ("Ġ", c) not in pairs]
    pairs += [(a, b) for a in letters for b in letters if (a, b) not in pairs]
    for a, b in pairs:
        if len(vocab) >= V - len(SPECIALS):
            break
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    assert len(vocab) == V - len(SPECIALS)
    added = [{"id": V - 2 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": SPECIALS[0], "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {SPECIALS[0]: {"id": SPECIALS[0], "ids": [V - 2],
                                                                "tokens": [SPECIALS[0]]}}},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": merges}}
    return json.dumps(spec)


def make_hf_folder(folder: Path, form: str, *, act: str = "silu", seed: int = 0, dtype: str = "F32",
                   scale_of: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Write a tiny BitNetForCausalLM folder; form: "online" | "packed" | "unpacked".

    Returns the projection weights as the checkpoint means them (float master for online, T*scale for
    the ternary forms), keyed by HF name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    meant: dict[str, np.ndarray] = {}
    emb = rng.normal(0, 0.5, (V, H)).astype(np.float32)
    rnd = bf16_round if dtype == "BF16" else (lambda a: a)
    tensors["model.embed_tokens.weight"] = (dtype, rnd(emb))
    for i in range(LAYERS):
        for mod, size in NORMS.items():
            tensors[f"model.layers.{i}.{mod}.weight"] = (dtype, rnd(1 + 0.1 * rng.normal(size=size)
                                                                       .astype(np.float32)))
        for mod, (o, k) in PROJ.items():
            name = f"model.layers.{i}.{mod}.weight"
            w = rnd(rng.normal(0, 1 / np.sqrt(k), (o, k)).astype(np.float32))
            if form == "online":
                tensors[name] = (dtype, w)
                meant[name] = w
                continue
            s = np.float32(rnd(np.array([np.abs(w).mean()], np.float32))[0])
            t = np.clip(np.rint(w / s), -1, 1).astype(np.int8)
            tensors[name] = ("U8", pack_hf(t)) if form == "packed" else (dtype, t.astype(np.float32))
            tensors[name[: -len(".weight")] + ".weight_scale"] = (dtype, np.array([s], np.float32))
            meant[name] = t.astype(np.float32) * s
    tensors["model.norm.weight"] = (dtype, rnd(np.ones(H, np.float32)))
    write_safetensors(folder / "model.safetensors", tensors)
    qc = ({"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
          if form == "online" else
          {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "offline"})
    config = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": V,
              "hidden_size": H, "intermediate_size": F, "num_hidden_layers": LAYERS,
              "num_attention_heads": HEADS, "num_key_value_heads": KV, "hidden_act": act,
              "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": True, "bos_token_id": V - 2, "eos_token_id": V - 1,
              "quantization_config": qc}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(tokenizer_json())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "add_bos_token": True}))
    return meant
