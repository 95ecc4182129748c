"""What the `ternary` quantizer does with one tensor: which tensors it takes, which option combinations
it honours, and the bytes it produces. Free of gRPC so tests and benchmarks can call it directly.

Tensors (GGUF names, numpy shapes [out, in]):
* the seven BitNet projections `blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight`
  -> the target type (i2_s, tl1, tq1_0, tq2_0: ternarized first; f16: float kept);
* `token_embd.weight` / `output.weight` -> Q8_0 when quant_embd, else not taken (the core keeps F16);
* anything else (norm vectors) -> not taken (the core keeps F32).

Options (QuantizerConfig): `sym` must be true for the ternary types (values are -1/0/+1 times a scale:
there is no zero point to choose); `per_channel` (one scale per output row) is honoured by TQ1_0/TQ2_0
(each 256-value block carries its own d) and refused by I2_S/TL1 (one float32 scale per tensor);
`group_size` must divide the row length of every tensor the plugin takes. The ternary scale itself is
BitNet's absmean over the tensor (or row): group_size does not change values, it is checked and recorded
(Configure warns when it is not the default). Per-group scales are deliberately not offered: BitNet
b1.58 is trained with one absmean scale per tensor, so a per-group scale would give ternary values the
model never saw (and I2_S / TL1 hold one scale per tensor anyway). Q8_0 embeddings use the format's own
32-value blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from .f16_kernels import encode_f16
from .i2s_kernels import QK_I2_S
from .ternarize import row_stats_numba, ternary_scales
from .ternary_encode import encode_ternary, ternary_nbytes
from .tl1_kernels import TL1_BK, TL1_BM
from .tq_kernels import QK_K

LINEAR = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
EMBEDDINGS = ("token_embd.weight", "output.weight")
TERNARY = ("I2_S", "TL1", "TQ1_0", "TQ2_0")
TYPES = (*TERNARY, "F16")
# Row-length / row-count constraints of each type: (K multiple, M multiple).
SHAPE_RULES = {
    "I2_S": (QK_I2_S, 1),
    "TL1": (TL1_BK, TL1_BM),
    "TQ1_0": (QK_K, 1),
    "TQ2_0": (QK_K, 1),
    "F16": (1, 1),
    "Q8_0": (32, 1),
}


DEFAULT_GROUP_SIZE = 32
Q8_0_BLOCK = 32


class OptionError(ValueError):
    """An option combination the target type cannot honour."""


@dataclass(frozen=True)
class Options:
    """The effective QuantizerConfig, with the type as a ggml name ("I2_S", "TQ2_0", ...)."""

    quant_type: str = "I2_S"
    group_size: int = 32
    sym: bool = True
    per_channel: bool = False
    quant_embd: bool = False


def check_options(o: Options) -> list[str]:
    """Raise OptionError for a combination `o.quant_type` cannot honour; return warnings."""
    t = o.quant_type
    if t not in TYPES:
        raise OptionError(f"quant_type {t!r} is not produced by this plugin (it makes {', '.join(TYPES)})")
    if o.group_size <= 0:
        raise OptionError(f"group_size must be > 0, found {o.group_size}")
    warnings = []
    if t in TERNARY:
        if not o.sym:
            raise OptionError(
                f"sym=false cannot be honoured by {t}: ternary weights are -1/0/+1 times a "
                "scale, symmetric by construction (no zero point); use --sym"
            )
        if o.per_channel and t in ("I2_S", "TL1"):
            raise OptionError(
                f"per_channel cannot be honoured by {t}: it stores one float32 scale per "
                "tensor; use tq1_0/tq2_0 (one scale per 256-value block) for per-row scales"
            )
        if o.group_size != DEFAULT_GROUP_SIZE:
            warnings.append(
                f"group_size {o.group_size} does not change {t} values: the ternary scale is BitNet's "
                f"absmean per {'row' if o.per_channel else 'tensor'}, as the model was trained; it must "
                "divide every row and is recorded in the file"
            )
    else:
        if o.per_channel:
            warnings.append("per_channel has no effect on f16 (float weights are kept)")
        if not o.sym:
            warnings.append("sym has no effect on f16 (float weights are kept)")
        if o.group_size != DEFAULT_GROUP_SIZE:
            warnings.append(f"group_size {o.group_size} has no effect on f16 (float weights are kept)")
    if o.quant_embd and o.group_size != Q8_0_BLOCK:
        warnings.append(
            f"group_size {o.group_size} does not apply to the Q8_0 embeddings: Q8_0 blocks are "
            f"{Q8_0_BLOCK} values by format"
        )
    return warnings


def target_type(name: str, shape: tuple[int, ...], o: Options) -> tuple[str | None, str]:
    """(ggml type the tensor would get, "") or (None, why the plugin does not take it)."""
    if name in EMBEDDINGS:
        if not o.quant_embd:
            return None, "embeddings are kept as float (F16) unless quant_embd is set"
        want = "Q8_0"
    elif LINEAR.match(name):
        want = o.quant_type
    else:
        return None, f"{name} is not a linear projection weight (norms and other tensors stay F32)"
    if len(shape) != 2:
        return None, f"{name}: expected a matrix [out, in], found shape {list(shape)}"
    M, K = shape
    k_mult, m_mult = SHAPE_RULES[want]
    if K % k_mult:
        return None, f"{want} needs the row length (in_features) to be a multiple of {k_mult}, found {K}"
    if M % m_mult:
        return None, f"{want} needs the row count (out_features) to be a multiple of {m_mult}, found {M}"
    if want != "Q8_0" and K % o.group_size:
        return None, f"group_size {o.group_size} does not divide the row length {K}"
    return want, ""


@dataclass
class Quantized:
    """One quantized tensor: the GGUF payload bytes and the reconstruction error."""

    type_name: str
    data: np.ndarray  # uint8, 1-D
    mse: float
    ternary_source: bool = False  # the input was already ternary x one scale (kept exactly)


def payload_nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    """Bytes of the payload of a [M, K] tensor of `type_name` (a type target_type can answer)."""
    M, K = shape
    if type_name == "F16":
        return 2 * M * K
    if type_name == "Q8_0":
        return M * K // 32 * 34
    return ternary_nbytes(type_name, M, K)


def quantize_tensor(name: str, x: np.ndarray, o: Options, out: np.ndarray | None = None) -> Quantized:
    """Quantize float32 x [out, in] as `target_type` says; ValueError if the plugin does not take it.
    `out` (uint8, 1-D, payload_nbytes long, e.g. shared memory) receives the payload when given."""
    want, why = target_type(name, x.shape, o)
    if want is None:
        raise ValueError(f"{name}: not quantized by this plugin: {why}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if want == "F16":
        data, sse, non_finite = encode_f16(x, out=out)
        _check_finite(name, x, not non_finite.any())
        return Quantized("F16", data, float(sse.sum() / max(x.size, 1)))
    if want == "Q8_0":
        _check_finite(name, x, np.isfinite(x).all())
        q = np.ascontiguousarray(gguf_quantize(x, GGMLQuantizationType.Q8_0))
        back = gguf_dequantize(q, GGMLQuantizationType.Q8_0).astype(np.float32)
        data = q.reshape(-1).view(np.uint8)
        if out is not None:
            out[...] = data
            data = out
        return Quantized("Q8_0", data, _mse(x, back))
    # Two reads of x: the row statistics (absmean needs the whole tensor's mean first), then one fused
    # ternarize + encode + error pass writing the payload (ternary_encode.py).
    stats = row_stats_numba(x)
    _check_finite(name, x, np.isfinite(stats[0]).all())
    inv, scale, was_ternary = ternary_scales(x, per_channel=o.per_channel, stats=stats)
    data, sse, _nnz = encode_ternary(want, x, inv, scale, out=out)
    return Quantized(want, data, float(sse.sum() / max(x.size, 1)), was_ternary)


def _check_finite(name: str, x: np.ndarray, all_finite: bool) -> None:
    if not all_finite:
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name}: non-finite value {x[tuple(bad)]} at {bad.tolist()}")


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float((d * d).mean()) if d.size else 0.0
