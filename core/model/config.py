"""The hyper-parameters of a BitNet b1.58 model and how its origin computes it.

One `ModelConfig` describes every supported architecture. The fields that differ between the peers'
graphs (FFN activation, activation quantization, tied output) are explicit here, so the forward pass
never tests a format name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# How activations are quantized before a ternary matmul — each reproduces one peer exactly:
#   "q8_k":        llama.cpp TQ1_0/TQ2_0 (vec_dot_type Q8_K): int8 per 256-element block along K,
#                  scale from the *signed* absmax (iscale = -127/max), round half to even.
#   "i8_s":        bitnet.cpp I2_S: int8 per token, act_scale = float32(127/max|x|) computed in double,
#                  result y = float32(float32(isum)/act_scale) * w_scale.
#   "absmax_token": transformers BitNet ActQuant: per token s = 127/clamp(max|x|,1e-5),
#                  xq = clamp(round(x*s),-128,127)/s (fake quant), float matmul.
#   "none":        float activations (dense/F16 weights, or a quantization-free baseline).
ActQuant = Literal["q8_k", "i8_s", "absmax_token", "none"]
FfnActivation = Literal["silu", "relu2"]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters plus the numerics of the graph the file's origin runs."""

    arch: str  # as the file names it: "bitnet", "bitnet-b1.58", "bitnet-25", "BitNetForCausalLM"
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int = 2048
    head_dim: int = 0  # 0 means n_embd // n_head
    n_rot: int = 0  # rotary dims; 0 means head_dim
    rms_eps: float = 1e-5
    rope_base: float = 10000.0
    ffn_act: FfnActivation = "silu"
    act_quant: ActQuant = "q8_k"
    tie_embeddings: bool = True
    # The origin rounds these operands to fp16 (bitnet.cpp/llama.cpp defaults); the engine may emulate it.
    fp16_kv_reference: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    add_bos: bool = True
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.n_embd // self.n_head)
        if self.n_rot == 0:
            object.__setattr__(self, "n_rot", self.head_dim)

    @property
    def n_embd_kv(self) -> int:
        """Width of K and V (GQA: fewer kv heads than query heads)."""
        return self.head_dim * self.n_head_kv

    @property
    def n_group(self) -> int:
        """Query heads per kv head; query head h reads kv head h // n_group."""
        return self.n_head // self.n_head_kv
