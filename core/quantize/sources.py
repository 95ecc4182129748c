"""Source checkpoints for `tritium quantize`, read one tensor at a time under their GGUF names.

* Hugging Face `BitNetForCausalLM` folders (core/formats/hf_model.py reads config.json):
  - online float master weights: sent as float32, the quantizer ternarizes them (absmean);
  - packed uint8 [out/4, in] + weight_scale, or unpacked ternary floats + weight_scale: the ternary values
    times the scale (autobitlinear: weight_scale; bitlinear: 1/weight_scale), checked to be ternary —
    the quantizer keeps such a tensor's values and scale exactly.
* GGUF files of any type Tritium reads (F32/F16/BF16/Q8_0 floats, TQ1_0/TQ2_0/I2_S/TL1 ternary): each
  tensor dequantized to float32; metadata (tokenizer included) carried over.

Only one tensor is materialized at a time, so a model larger than RAM/2 converts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritium.core.errors import ModelFormatError, TritiumError
from tritium.core.formats.bitnet_tensors import LINEAR_NAMES, bitnet_tensor_names
from tritium.core.formats.ggml_dequant import dequantize
from tritium.core.formats.gguf_model import read_gguf_model
from tritium.core.formats.hf_model import (
    CONFIG_NAME,
    NORMS,
    PROJECTIONS,
    BitNetQuant,
    count_layers,
    parse_hf_config,
)
from tritium.core.formats.safetensors_reader import SafetensorsCheckpoint, open_checkpoint, to_float32
from tritium.core.model.config import ModelConfig

from .errors import QuantizeError
from .hf_unpack import first_code_3, unpack_numba

HF_LINEAR = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
HF_NORM = {"input_layernorm": "attn_norm", "self_attn.attn_sub_norm": "attn_sub_norm",
           "post_attention_layernorm": "ffn_norm", "mlp.ffn_sub_norm": "ffn_sub_norm"}
assert set(HF_LINEAR) == set(PROJECTIONS) and set(HF_NORM) == set(NORMS)


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the source: GGUF name, numpy shape, how it is stored, and its stored size."""

    name: str
    shape: tuple[int, ...]
    stored_as: str  # "F32", "BF16", "U8 packed ternary", "I2_S", ...
    nbytes: int
    claims_ternary: bool  # the source says the values are ternary x scale (packed/offline/ternary GGUF)


@dataclass
class ModelSource:
    """A checkpoint opened for conversion. `read(name)` returns float32 [out, in] (or [n])."""

    path: Path
    kind: str  # "hf" | "gguf"
    config: ModelConfig
    tensors: list[SourceTensor]
    metadata: dict[str, object]  # GGUF metadata to carry over (tokenizer.*, etc.); arch keys are rebuilt
    value_types: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _reader: object = None

    def read(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """The tensor as float32 (a new array or a view of the file; or `out`, a C-contiguous float32
        array of the tensor's shape, filled and returned); QuantizeError on bad data.

        With `out` (the quantizer session's shared-memory input), a BF16/F16 checkpoint is widened
        straight into it, so the tensor is written once instead of converted and then copied."""
        x = self._reader(name, out)  # type: ignore[misc]
        if out is None or x is out:
            return x
        if out.shape != x.shape:
            raise QuantizeError(f"{self.path}: tensor '{name}' is {list(x.shape)}, the buffer "
                                f"{list(out.shape)}")
        np.copyto(out, x)
        return out

    def iter_tensors(self) -> Iterator[SourceTensor]:
        return iter(self.tensors)

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def open_source(path: str | Path) -> ModelSource:
    """Open an HF folder or a GGUF file; QuantizeError if it is missing, corrupt or not a BitNet model."""
    p = Path(path)
    if not p.exists():
        raise QuantizeError(f"{p}: source does not exist (expected a Hugging Face folder or a .gguf file)")
    try:
        return _open_hf(p) if p.is_dir() else _open_gguf(p)
    except TritiumError as exc:
        if isinstance(exc, QuantizeError):
            raise
        raise QuantizeError(f"cannot read source {p}: {exc}") from None
    except OSError as exc:
        raise QuantizeError(f"cannot read source {p}: {exc}") from None


# ------------------------------------------------------------------------------------------------ GGUF


def _open_gguf(p: Path) -> ModelSource:
    m = read_gguf_model(p)  # validates names, shapes, types against the config
    f = m.file
    assert f is not None
    tensors = []
    for t in f.tensors.values():
        tensors.append(SourceTensor(t.name, t.shape, t.type.name, t.nbytes,
                                    t.type.name in ("I2_S", "TQ1_0", "TQ2_0", "TL1")))

    def read(name: str, out: np.ndarray | None) -> np.ndarray:
        t = f.tensors[name]
        raw = f.raw(name)
        if t.type.name == "TL1":
            from tritium.core.formats.tl1_layout import ternary_from_tl1

            return ternary_from_tl1(name, raw, t.ne).dequantize()
        try:
            return np.asarray(dequantize(raw, t.type.name, t.ne), dtype=np.float32)
        except NotImplementedError as exc:
            raise QuantizeError(f"{p}: tensor '{name}': {exc}") from None

    md = {k: v for k, v in f.metadata.items() if not k.startswith("general.")}
    return ModelSource(p, "gguf", m.config, tensors, md, dict(f.value_types),
                       [f"source: GGUF {m.config.arch}, linear types "
                        f"{sorted({t.stored_as for t in tensors if '.attn_q.' in t.name})}"], read)


# -------------------------------------------------------------------------------------------------- HF


def _open_hf(folder: Path) -> ModelSource:
    notes: list[str] = []
    if not (folder / CONFIG_NAME).is_file():
        raise QuantizeError(f"{folder}: no {CONFIG_NAME} (a Hugging Face BitNet folder needs it)")
    ckpt = open_checkpoint(folder)
    config, quant, _raw = parse_hf_config(folder, notes, count_layers(ckpt))
    names = bitnet_tensor_names(config.n_layer, with_output=not config.tie_embeddings)
    hf_of = _hf_names(config)
    tensors = []
    for name in names:
        hf = hf_of[name]
        if hf not in ckpt:
            raise QuantizeError(f"{folder}: tensor {hf!r} (-> {name}) is missing")
        e = ckpt.entry(hf)
        linear = name.split(".")[-2] in LINEAR_NAMES
        claims = linear and not (quant.linear_class == "autobitlinear" and quant.mode == "online")
        stored = f"{e.dtype} packed ternary" if e.dtype == "U8" else e.dtype
        shape = _expected_shape(name, config)
        if not linear and tuple(e.shape) != shape:
            raise QuantizeError(f"{e.file}: tensor {hf!r}: shape {list(e.shape)}, expected {list(shape)}")
        tensors.append(SourceTensor(name, shape, stored, e.nbytes, claims))

    def read(name: str, out: np.ndarray | None) -> np.ndarray:
        return _read_hf(ckpt, quant, hf_of[name], name, config, out)

    from tritium.core.quantize.hf_tokenizer import tokenizer_metadata

    md, tok_notes = tokenizer_metadata(folder, config)
    form = ("float master weights (absmean-ternarized by the quantizer)"
            if quant.linear_class == "autobitlinear" and quant.mode == "online"
            else f"ternary weights ({quant.linear_class} {quant.mode}): values and scale kept exactly")
    return ModelSource(folder, "hf", config, tensors, md, {},
                       [f"source: Hugging Face BitNetForCausalLM, {form}", *tok_notes], read)


def _hf_names(config: ModelConfig) -> dict[str, str]:
    out = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    for i in range(config.n_layer):
        for hf, g in {**HF_LINEAR, **HF_NORM}.items():
            out[f"blk.{i}.{g}.weight"] = f"model.layers.{i}.{hf}.weight"
    return out


def _expected_shape(name: str, c: ModelConfig) -> tuple[int, ...]:
    from tritium.core.formats.bitnet_tensors import bitnet_shapes

    return bitnet_shapes(c)[name]


def _float32(raw: np.ndarray, dtype: str, out: np.ndarray | None) -> np.ndarray:
    """to_float32, widening BF16 straight into `out` when it fits (one pass, no temporary)."""
    if out is not None and dtype == "BF16" and out.shape == raw.shape and out.flags.c_contiguous:
        np.left_shift(raw, np.uint32(16), out=out.view(np.uint32))
        return out
    return np.asarray(to_float32(raw, dtype), dtype=np.float32)


def _read_hf(ckpt: SafetensorsCheckpoint, quant: BitNetQuant, hf: str, name: str, c: ModelConfig,
             out: np.ndarray | None = None) -> np.ndarray:
    e = ckpt.entry(hf)
    where = f"{e.file}: tensor {hf!r}"
    shape = _expected_shape(name, c)
    role = name.split(".")[-2]
    if role not in LINEAR_NAMES:
        return np.asarray(to_float32(ckpt.array(hf), e.dtype), dtype=np.float32)
    out_f, in_f = shape
    online = quant.linear_class == "autobitlinear" and quant.mode == "online"
    if online:
        if e.dtype == "U8" or tuple(e.shape) != shape:
            raise QuantizeError(f"{where}: {e.dtype} {list(e.shape)}, but quantization_mode 'online' expects "
                                f"float master weights {list(shape)}")
        return _float32(ckpt.array(hf), e.dtype, out)
    scale = _weight_scale(ckpt, hf[: -len(".weight")] + ".weight_scale", quant)
    if e.dtype == "U8":
        if tuple(e.shape) != (out_f // 4, in_f):
            raise QuantizeError(f"{where}: packed shape {list(e.shape)}, expected {[out_f // 4, in_f]}")
        packed = ckpt.array(hf)
        use_out = out is not None and out.shape == shape and out.flags.c_contiguous
        t = out if use_out else np.empty(shape, np.float32)
        if unpack_numba(packed, np.float32(scale), t).any():
            at, i = first_code_3(packed)
            raise QuantizeError(f"{where}: packed byte {at} holds code 3 in bits {2 * i}..{2 * i + 1}; "
                                "the source claims ternary values (codes 0/1/2 = -1/0/+1)")
        return t
    if tuple(e.shape) != shape:
        raise QuantizeError(f"{where}: shape {list(e.shape)}, expected packed {[out_f // 4, in_f]} or "
                            f"ternary {list(shape)}")
    w = np.asarray(to_float32(ckpt.array(hf), e.dtype), dtype=np.float32)
    bad = ~np.isin(w, (-1.0, 0.0, 1.0))
    if bad.any():
        at = np.argwhere(bad)[0]
        raise QuantizeError(f"{where}: value {float(w[tuple(at)])!r} at {list(at)} is not ternary, but the "
                            f"source claims ternary weights (quantization_mode {quant.mode!r}); float master "
                            "weights need quantization_mode 'online'")
    return w * scale


def _weight_scale(ckpt: SafetensorsCheckpoint, name: str, quant: BitNetQuant) -> np.float32:
    if name not in ckpt:
        raise QuantizeError(f"{ckpt.folder}: tensor {name!r} is missing (ternary checkpoints need it)")
    e = ckpt.entry(name)
    v = np.float32(np.asarray(to_float32(ckpt.array(name), e.dtype)).reshape(-1)[0])
    if not np.isfinite(v) or v <= 0:
        raise QuantizeError(f"{e.file}: tensor {name!r}: scale {float(v)!r}, expected finite and > 0")
    # autobitlinear multiplies by weight_scale (= mean|W|); legacy bitlinear divides by it.
    return v if quant.linear_class == "autobitlinear" else np.float32(1.0) / v


__all__ = ["ModelFormatError", "ModelSource", "SourceTensor", "open_source"]
