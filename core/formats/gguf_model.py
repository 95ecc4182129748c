"""Map a BitNet GGUF file to `ModelConfig` + `ModelWeights`, checking every tensor against the config.

Architectures: llama.cpp's `bitnet` (SiLU-gated FFN; TQ1_0/TQ2_0 weights with Q8_K activations, or
bitnet.cpp I2_S files of that arch) and bitnet.cpp's `bitnet-b1.58` / `bitnet-25` (squared-ReLU gated FFN,
I2_S weights with I8_S per-token activations). Metadata keys carry the architecture as prefix (FORMATS.md).
Weights stay views of the memory-mapped file where the layout allows (see runtime_layout.py). The
tokenizer is built from the same metadata by `tritium.core.tokenizer.from_gguf_metadata`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tritium.core.errors import ModelFormatError
from tritium.core.formats.bitnet_tensors import LINEAR_NAMES, NORM_NAMES, bitnet_shapes, bitnet_tensor_names
from tritium.core.formats.gguf_reader import GGUFFile, GGUFTensor, read_gguf
from tritium.core.formats.runtime_layout import (
    EMBEDDING_EXTRA_TYPES,
    FLOAT_TYPES,
    TERNARY_TYPES,
    float_tensor,
    ternary_weight,
)
from tritium.core.model.config import ActQuant, FfnActivation, ModelConfig
from tritium.core.model.loader import LoadedModel, TensorInfo
from tritium.core.model.weights import DenseWeight, LayerWeights, Linear, ModelWeights, TernaryWeight

# arch -> (FFN activation, why) — the graph each peer builds for it
ARCHES: dict[str, tuple[FfnActivation, str]] = {
    "bitnet": ("silu", "llama.cpp/bitnet.cpp build_bitnet: SiLU-gated FFN"),
    "bitnet-b1.58": ("relu2", "bitnet.cpp build_bitnet_158: squared-ReLU gated FFN"),
    "bitnet-25": ("relu2", "bitnet.cpp build_bitnet_158: squared-ReLU gated FFN"),
}
ACT_QUANT_OF_TYPE: dict[str, ActQuant] = {"TQ1_0": "q8_k", "TQ2_0": "q8_k", "I2_S": "i8_s", "TL1": "i8_s",
                                          "F32": "none", "F16": "none", "BF16": "none", "Q8_0": "none"}
_ACT_QUANT_WHY = {
    "q8_k": "llama.cpp's TQ1_0/TQ2_0 mat-mul quantizes activations to Q8_K (int8 per 256 values)",
    "i8_s": "bitnet.cpp's I2_S mat-mul quantizes activations to I8_S (int8 per token, absmax)",
    "none": "dense float linear weights: float activations",
}
_INT_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64")
_MAX_DIM = 1 << 24  # far above any real model; rejects corrupted counts before anything uses them


@dataclass
class GGUFModel:
    """A GGUF file mapped to the runtime: everything of a LoadedModel except the tokenizer."""

    path: Path
    config: ModelConfig
    weights: ModelWeights
    tensors: list[TensorInfo]
    metadata: dict[str, object]
    interpretation: list[str] = field(default_factory=list)
    file: GGUFFile | None = None


def load_gguf(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a BitNet GGUF file with its tokenizer; ModelFormatError on any bad or unsupported input."""
    from tritium.core.tokenizer import from_gguf_metadata

    m = read_gguf_model(path)
    tokenizer = from_gguf_metadata(m.metadata)
    return LoadedModel(path=m.path, format="gguf", config=m.config, weights=m.weights, tokenizer=tokenizer,
                       tensors=m.tensors, metadata=m.metadata, interpretation=m.interpretation)


class _Meta:
    """Typed access to the metadata, with errors naming the file and key."""

    def __init__(self, f: GGUFFile) -> None:
        self.f = f

    def _bad(self, key: str, expected: str, found: str) -> ModelFormatError:
        return ModelFormatError(f"{self.f.path}: metadata '{key}': expected {expected}, found {found}")

    def get_int(self, key: str, default: int | None = None, *, lo: int = 1, hi: int = _MAX_DIM) -> int:
        if key not in self.f.metadata:
            if default is None:
                raise ModelFormatError(f"{self.f.path}: metadata '{key}': expected an integer, found the key "
                                       f"missing (required)")
            return default
        v, t = self.f.metadata[key], self.f.value_types[key]
        if t not in _INT_TYPES:
            raise self._bad(key, "an integer", f"{t} {_short(v)}")
        if not lo <= v <= hi:  # type: ignore[operator]
            raise self._bad(key, f"an integer in [{lo}, {hi}]", str(v))
        return int(v)  # type: ignore[arg-type]

    def get_float(self, key: str, default: float | None = None) -> float:
        if key not in self.f.metadata:
            if default is None:
                raise ModelFormatError(f"{self.f.path}: metadata '{key}': expected a float, found the key "
                                       f"missing (required)")
            return default
        v, t = self.f.metadata[key], self.f.value_types[key]
        if t not in ("f32", "f64") + _INT_TYPES or not math.isfinite(v):  # type: ignore[arg-type]
            raise self._bad(key, "a finite float", f"{t} {_short(v)}")
        return float(v)  # type: ignore[arg-type]

    def get_str(self, key: str, default: str | None = None) -> str | None:
        if key not in self.f.metadata:
            return default
        v = self.f.metadata[key]
        if self.f.value_types[key] != "string":
            raise self._bad(key, "a string", f"{self.f.value_types[key]} {_short(v)}")
        return v  # type: ignore[return-value]


def _short(v: object) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _config(f: GGUFFile, notes: list[str]) -> ModelConfig:
    md = _Meta(f)
    arch = md.get_str("general.architecture")
    if arch is None:
        raise ModelFormatError(f"{f.path}: metadata 'general.architecture': expected a string, found the key "
                               f"missing (required)")
    if arch not in ARCHES:
        raise ModelFormatError(f"{f.path}: metadata 'general.architecture': expected one of "
                               f"{sorted(ARCHES)} (BitNet b1.58), found '{arch}' (not supported)")
    a = arch
    n_embd = md.get_int(f"{a}.embedding_length")
    n_layer = md.get_int(f"{a}.block_count", hi=4096)
    n_ff = md.get_int(f"{a}.feed_forward_length")
    n_head = md.get_int(f"{a}.attention.head_count", hi=n_embd)
    n_head_kv = md.get_int(f"{a}.attention.head_count_kv", n_head, hi=n_head)
    n_ctx = md.get_int(f"{a}.context_length")
    if n_head % n_head_kv:
        raise ModelFormatError(f"{f.path}: metadata '{a}.attention.head_count_kv': expected a divisor of "
                               f"head_count {n_head}, found {n_head_kv}")
    if f"{a}.attention.key_length" in f.metadata:
        head_dim = md.get_int(f"{a}.attention.key_length")
        v_dim = md.get_int(f"{a}.attention.value_length", head_dim)
        if v_dim != head_dim:
            raise ModelFormatError(f"{f.path}: metadata '{a}.attention.value_length': expected key_length "
                                   f"{head_dim} (unsupported config), found {v_dim}")
    else:
        if n_embd % n_head:
            raise ModelFormatError(f"{f.path}: metadata '{a}.attention.head_count': expected a divisor of "
                                   f"embedding_length {n_embd}, found {n_head}")
        head_dim = n_embd // n_head
    n_rot = md.get_int(f"{a}.rope.dimension_count", head_dim, hi=head_dim)
    if n_rot % 2:
        raise ModelFormatError(f"{f.path}: metadata '{a}.rope.dimension_count': expected an even number, "
                               f"found {n_rot}")
    if a != "bitnet" and n_rot != head_dim:
        raise ModelFormatError(f"{f.path}: metadata '{a}.rope.dimension_count': bitnet.cpp's {a} graph "
                               f"needs n_rot == head_dim {head_dim}, found {n_rot}")
    eps = md.get_float(f"{a}.attention.layer_norm_rms_epsilon")
    if not eps > 0:
        raise ModelFormatError(f"{f.path}: metadata '{a}.attention.layer_norm_rms_epsilon': expected > 0, "
                               f"found {eps}")
    rope_base = md.get_float(f"{a}.rope.freq_base", 10000.0)
    if not rope_base > 0:
        raise ModelFormatError(f"{f.path}: metadata '{a}.rope.freq_base': expected > 0, found {rope_base}")
    scaling = md.get_str(f"{a}.rope.scaling.type", "none")
    factor = md.get_float(f"{a}.rope.scaling.factor", 1.0)
    if scaling not in ("none", "linear") or (scaling == "linear" and factor != 1.0):
        raise ModelFormatError(f"{f.path}: metadata '{a}.rope.scaling.*': expected none or linear with "
                               f"factor 1.0 (what BitNet converters write), found {scaling} x{factor} "
                               f"(unsupported)")
    if scaling == "linear":
        notes.append("rope.scaling linear x1.0: a no-op, ignored")

    tokens = f.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and tokens:
        n_vocab, vocab_src = len(tokens), "tokenizer.ggml.tokens"
    elif f"{a}.vocab_size" in f.metadata:
        n_vocab, vocab_src = md.get_int(f"{a}.vocab_size", hi=1 << 26), f"{a}.vocab_size"
    else:
        emb = f.tensors.get("token_embd.weight")
        if emb is None or len(emb.ne) != 2:
            raise ModelFormatError(f"{f.path}: vocabulary size: expected tokenizer.ggml.tokens, "
                                   f"{a}.vocab_size or a 2-D token_embd.weight, found none")
        n_vocab, vocab_src = emb.ne[1], "token_embd.weight"
    notes.append(f"n_vocab {n_vocab} from {vocab_src}")

    bos = (md.get_int("tokenizer.ggml.bos_token_id", lo=0, hi=n_vocab - 1)
           if "tokenizer.ggml.bos_token_id" in f.metadata else None)
    eos = [md.get_int(k, lo=0, hi=n_vocab - 1)
           for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in f.metadata]
    add_bos = (f.metadata["tokenizer.ggml.add_bos_token"]
               if f.value_types.get("tokenizer.ggml.add_bos_token") == "bool" else True)
    ffn_act, why = ARCHES[a]
    notes.append(f"architecture '{a}': {why}; attention/FFN sub-norms before wo/w_down; rope NEOX, base "
                 f"{rope_base:g}, n_rot {n_rot}; KV/Q fp16 rounding as the peer's default F16 KV cache")
    return ModelConfig(
        arch=a, n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
        n_ff=n_ff, n_ctx=n_ctx, head_dim=head_dim, n_rot=n_rot, rms_eps=eps, rope_base=rope_base,
        ffn_act=ffn_act, act_quant="none", tie_embeddings=True, fp16_kv_reference=True,
        bos_token_id=bos, eos_token_ids=tuple(dict.fromkeys(eos)), add_bos=bool(add_bos),
        extra={"general.name": f.metadata.get("general.name"),
               "general.file_type": f.metadata.get("general.file_type"),
               "token_embd_type": f.tensors["token_embd.weight"].type.name
               if "token_embd.weight" in f.tensors else None},
    )


def _check_tensor_set(f: GGUFFile, config: ModelConfig) -> None:
    expected = bitnet_tensor_names(config.n_layer, with_output="output.weight" in f.tensors)
    missing = [n for n in expected if n not in f.tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFormatError(f"{f.path}: tensor '{missing[0]}': expected for {config.arch} with "
                               f"{config.n_layer} layers, found it missing{more}")
    allowed = set(expected) | {f"blk.{i}.{ln}.scale" for i in range(config.n_layer) for ln in LINEAR_NAMES}
    extra = [n for n in f.tensors if n not in allowed]
    if extra:
        raise ModelFormatError(f"{f.path}: tensor '{extra[0]}': not part of a {config.arch} model with "
                               f"{config.n_layer} layers (expected only {len(expected)} known tensors and "
                               f"optional <linear>.scale), found {len(extra)} unexpected tensor(s)")


def _check_shape(f: GGUFFile, t: GGUFTensor, shape: tuple[int, ...], config: ModelConfig) -> None:
    if t.shape != shape:
        raise ModelFormatError(
            f"{f.path}: tensor '{t.name}': expected ggml shape {list(reversed(shape))} "
            f"(n_embd {config.n_embd}, n_ff {config.n_ff}, n_vocab {config.n_vocab}, "
            f"kv width {config.n_embd_kv}), found {list(t.ne)}")


def _float_matrix(f: GGUFFile, t: GGUFTensor, role: str) -> np.ndarray:
    if t.type.name not in FLOAT_TYPES + EMBEDDING_EXTRA_TYPES:
        raise ModelFormatError(f"{f.path}: tensor '{t.name}': type {t.type.name} is not supported for "
                               f"{role} (expected one of {', '.join(FLOAT_TYPES + EMBEDDING_EXTRA_TYPES)})")
    return float_tensor(t.type.name, f.raw(t.name), t.ne)


def _norm(f: GGUFFile, t: GGUFTensor) -> np.ndarray:
    if t.type.name not in ("F32", "F16", "BF16"):
        raise ModelFormatError(f"{f.path}: tensor '{t.name}': type {t.type.name} is not supported for a "
                               f"norm weight (expected F32, F16 or BF16)")
    v = float_tensor(t.type.name, f.raw(t.name), t.ne)
    return v if v.dtype == np.float32 else v.astype(np.float32)


def _tensor_scale(f: GGUFFile, name: str) -> float | None:
    t = f.tensors.get(name)
    if t is None:
        return None
    if t.ne != (1,) or t.type.name not in ("F32", "F16"):
        raise ModelFormatError(f"{f.path}: tensor '{name}': expected an F32 scale of ggml shape [1], found "
                               f"{t.type.name} {list(t.ne)}")
    s = float(float_tensor(t.type.name, f.raw(name), t.ne)[0])
    if not math.isfinite(s):
        raise ModelFormatError(f"{f.path}: tensor '{name}': expected a finite scale, found {s}")
    return s


def _linear(f: GGUFFile, t: GGUFTensor, scale: float | None) -> Linear:
    tn = t.type.name
    if tn in TERNARY_TYPES:
        w: TernaryWeight = ternary_weight(t.name, tn, f.raw(t.name), t.ne)
        if not np.isfinite(w.block_scales).all():
            raise ModelFormatError(f"{f.path}: tensor '{t.name}': expected finite {tn} scales, found "
                                   f"inf/nan (corrupted data)")
        if scale is not None:
            w.tensor_scale = scale
        return w
    if tn in FLOAT_TYPES:
        data = float_tensor(tn, f.raw(t.name), t.ne)
        if scale is not None:  # rare (dense weights with a llama.cpp .scale): fold it in, one copy
            data = data.astype(np.float32) * np.float32(scale)
        return DenseWeight(t.name, data)
    raise ModelFormatError(f"{f.path}: tensor '{t.name}': type {tn} is not supported for a linear weight "
                           f"(expected TQ1_0, TQ2_0, I2_S, F32, F16, BF16 or Q8_0)")


def read_gguf_model(path: str | os.PathLike[str]) -> GGUFModel:
    """Parse and validate a BitNet GGUF file into config + weights (no tokenizer)."""
    f = read_gguf(path)
    notes = list(f.interpretation)
    config = _config(f, notes)
    _check_tensor_set(f, config)
    shapes = bitnet_shapes(config)
    for name, t in f.tensors.items():
        if name in shapes:
            _check_shape(f, t, shapes[name], config)

    linear_tensors = [f.tensors[f"blk.{i}.{ln}.weight"] for i in range(config.n_layer) for ln in LINEAR_NAMES]
    for t in linear_tensors:
        if t.type.name not in ACT_QUANT_OF_TYPE:
            raise ModelFormatError(f"{f.path}: tensor '{t.name}': type {t.type.name} is not supported for a "
                                   f"linear weight (expected TQ1_0, TQ2_0, I2_S, F32, F16, BF16 or Q8_0)")
    first = linear_tensors[0]
    for t in linear_tensors:
        if ACT_QUANT_OF_TYPE[t.type.name] != ACT_QUANT_OF_TYPE[first.type.name]:
            raise ModelFormatError(
                f"{f.path}: tensor '{t.name}': expected the linear-weight family of '{first.name}' "
                f"({first.type.name}; one family of TQ1_0/TQ2_0, I2_S or float so that activations are "
                f"quantized one way), found {t.type.name}")
    linear_types = sorted({t.type.name for t in linear_tensors})
    layers = []
    n_scales = 0
    for i in range(config.n_layer):
        p = f"blk.{i}."
        lin: dict[str, Linear] = {}
        for ln in LINEAR_NAMES:
            scale = _tensor_scale(f, p + ln + ".scale")
            n_scales += scale is not None
            lin[ln] = _linear(f, f.tensors[p + ln + ".weight"], scale)
        norms = {nn: _norm(f, f.tensors[p + nn + ".weight"]) for nn in NORM_NAMES}
        layers.append(LayerWeights(
            attn_norm=norms["attn_norm"], wq=lin["attn_q"], wk=lin["attn_k"], wv=lin["attn_v"],
            attn_sub_norm=norms["attn_sub_norm"], wo=lin["attn_output"], ffn_norm=norms["ffn_norm"],
            w_gate=lin["ffn_gate"], w_up=lin["ffn_up"], ffn_sub_norm=norms["ffn_sub_norm"],
            w_down=lin["ffn_down"]))

    emb_t = f.tensors["token_embd.weight"]
    token_embd = _float_matrix(f, emb_t, "token_embd.weight")
    out_t = f.tensors.get("output.weight")
    output = _float_matrix(f, out_t, "output.weight") if out_t is not None else None
    weights = ModelWeights(token_embd=token_embd, output_norm=_norm(f, f.tensors["output_norm.weight"]),
                           layers=layers, output=output, keep_alive=[f.mm])

    act_quant: ActQuant = ACT_QUANT_OF_TYPE[linear_types[0]]
    config = replace(config, act_quant=act_quant, tie_embeddings=out_t is None)
    notes.append(f"linear weights {'/'.join(linear_types)} -> act_quant '{act_quant}': "
                 f"{_ACT_QUANT_WHY[act_quant]}")
    for tn in linear_types:
        notes.append({
            "I2_S": "I2_S codes used in place: views of the file, one float32 scale per tensor",
            "TQ2_0": "TQ2_0 codes copied once into a compact [out, in/4] array (the fp16 d after every 64 "
                     "code bytes prevents a 2-D view); per-256 d as float32",
            "TQ1_0": "TQ1_0 base-3 codes repacked once into compact 2-bit codes (TQ2_0 order); per-256 d",
            "TL1": "Tritium TL1 tiles repacked once into compact 2-bit codes; one float32 scale per tensor",
        }.get(tn, f"{tn} linear weights used as dense float matrices"
                  + (" (views of the file)" if tn in ("F32", "F16") else " (dequantized to float32 once)")))
    if n_scales:
        notes.append(f"{n_scales} optional <linear>.scale tensor(s) applied after the matmul (tensor_scale)")
    for t in (emb_t, out_t):
        if t is None:
            continue
        how = "a view of the file" if t.type.name in ("F32", "F16") else "dequantized to float32 once"
        if t.type.name in EMBEDDING_EXTRA_TYPES and (t is out_t or out_t is None):
            how += (f" (llama.cpp multiplies a {t.type.name} lm_head against Q8_K-quantized activations; "
                    f"Tritium's lm_head uses float activations, so logits differ slightly)")
        notes.append(f"{t.name} {t.type.name}: {how}")
    notes.append("lm_head: output.weight" if out_t is not None else
                 "lm_head: tied to token_embd.weight (no output.weight)")
    tensors = [TensorInfo(t.name, t.type.name, t.ne, t.nbytes, t.file_offset) for t in f.tensors.values()]
    return GGUFModel(Path(path), config, weights, tensors, f.metadata, notes, f)
