"""The tensor names and shapes of a BitNet b1.58 model in GGUF (llama.cpp `bitnet`, bitnet.cpp
`bitnet-b1.58`/`bitnet-25`): one source of truth for the writer and for the loader's shape checks."""

from __future__ import annotations

from tritium.core.model.config import ModelConfig

LINEAR_NAMES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
NORM_NAMES = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm")


def bitnet_tensor_names(n_layer: int, *, with_output: bool = False) -> list[str]:
    """GGUF tensor names of a BitNet model in the converters' file order."""
    names = ["token_embd.weight"]
    for i in range(n_layer):
        p = f"blk.{i}."
        names += [p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                  p + "attn_output.weight", p + "attn_sub_norm.weight", p + "ffn_norm.weight",
                  p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight",
                  p + "ffn_sub_norm.weight"]
    names.append("output_norm.weight")
    if with_output:
        names.append("output.weight")
    return names


def bitnet_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """numpy shapes ([out, in] or [n]) of every tensor of `config`'s BitNet model, output.weight included."""
    H, F, KV = config.n_embd, config.n_ff, config.n_embd_kv
    Q = config.head_dim * config.n_head
    per = {"attn_norm": (H,), "attn_q": (Q, H), "attn_k": (KV, H), "attn_v": (KV, H), "attn_output": (H, Q),
           "attn_sub_norm": (Q,), "ffn_norm": (H,), "ffn_gate": (F, H), "ffn_up": (F, H), "ffn_down": (H, F),
           "ffn_sub_norm": (F,)}
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (config.n_vocab, H),
                                          "output_norm.weight": (H,)}
    for i in range(config.n_layer):
        for k, s in per.items():
            shapes[f"blk.{i}.{k}.weight"] = s
    shapes["output.weight"] = (config.n_vocab, H)
    return shapes
