"""Which operands the model's origin rounds to fp16, so the engine can emulate it.

With ``kv_dtype="f16"`` Tritium reproduces the fp16 roundings of the peer the activation scheme
comes from (their defaults: F16 KV cache, no flash attention); with ``"f32"`` nothing is rounded.

* i8_s (bitnet.cpp): K, V and Q always. The softmax probabilities (before ·V) and the final normed
  hidden state (before an F16 lm_head) only in single-token calls: calls with >= 2 tokens go through
  llamafile's tinyBLAS F16xF32 kernel, which keeps the float32 side (tests/fixtures/bitnetcpp/README.md).
* q8_k (llama.cpp): K, V, Q, the probabilities and the F16 lm_head input in every call (ggml converts
  the float32 operand of an F16 matmul to fp16; FORMATS.md part 1).
* absmax_token / none (transformers): only the KV cache storage.
"""

from __future__ import annotations

from dataclasses import dataclass

KV_DTYPES = ("f32", "f16")


@dataclass(frozen=True)
class Fp16Rounding:
    """fp16 roundings for one forward call."""

    kv: bool = False
    q: bool = False
    probs: bool = False
    lm_input: bool = False


def fp16_rounding(act_quant: str, kv_dtype: str, n_tokens: int, lm_head_f16: bool) -> Fp16Rounding:
    """The roundings of a call of `n_tokens` tokens (all sequences of a batch step together)."""
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype must be one of {KV_DTYPES}, got {kv_dtype!r}")
    if kv_dtype == "f32":
        return Fp16Rounding()
    if act_quant == "i8_s":
        single = n_tokens == 1
        return Fp16Rounding(kv=True, q=True, probs=single, lm_input=single and lm_head_f16)
    if act_quant == "q8_k":
        return Fp16Rounding(kv=True, q=True, probs=True, lm_input=lm_head_f16)
    return Fp16Rounding(kv=True)
