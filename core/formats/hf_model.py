"""Load a Hugging Face `BitNetForCausalLM` folder (transformers' modeling_bitnet + BitNet quantizer).

A folder holds config.json, model.safetensors (or shards named by model.safetensors.index.json) and
tokenizer.json / tokenizer_config.json. Three checkpoint forms of the seven projections are accepted,
chosen by `quantization_config` (see /work/shared/FORMATS.md Part 2):

* online master (autobitlinear, quantization_mode "online"): float weights [out, in]. transformers
  re-ternarizes them on every forward (`WeightQuant`); we do it once here with the same float32 math:
  `sc = 1/clamp(mean|W|, 1e-5)`, `T = clamp(round(W*sc), -1, 1)`, dequant scale `1/sc` (the mean is
  accumulated in float64, so sc may differ from torch's float32 reduction in the last ulp).
* packed (autobitlinear offline, or the legacy "bitlinear" class): uint8 [out/4, in], four row blocks,
  `T[i*R + r, c] = ((P[r, c] >> 2i) & 3) - 1`, plus `weight_scale` [1]. autobitlinear multiplies by
  weight_scale (= mean|W|); bitlinear divides by it (weight_scale = 1/mean|W|).
* unpacked ternary (autobitlinear offline, what `save_pretrained` writes): float [out, in] in {-1, 0, 1}
  plus `weight_scale`.

Every form is repacked once into the runtime `TernaryWeight` layout (128-value groups, I2_S plane order)
with one scale per tensor; transformers' per-token absmax int8 activation fake-quant is `absmax_token`.
Embedding and lm_head stay memory-mapped when stored as F32/F16; BF16 is widened to float32 once
(float16 cannot represent every bf16 value, and transformers in float32 uses the exact widened values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tritium.core.errors import ModelFormatError
from tritium.core.formats.safetensors_reader import (
    FLOAT_DTYPES,
    SafetensorsCheckpoint,
    open_checkpoint,
    to_float32,
)
from tritium.core.model.config import ModelConfig
from tritium.core.model.weights import (
    GROUP,
    GROUP_BYTES,
    I2S_PLANE_SHIFTS,
    LayerWeights,
    ModelWeights,
    TernaryWeight,
)

if TYPE_CHECKING:
    from tritium.core.model.loader import LoadedModel

ARCH = "BitNetForCausalLM"
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
# transformers' BitNetConfig defaults (configuration_bitnet.py, 5.24), used for absent fields.
CONFIG_DEFAULTS: dict[str, object] = {
    "vocab_size": 128256,
    "hidden_size": 2560,
    "intermediate_size": 6912,
    "num_hidden_layers": 30,
    "num_attention_heads": 20,
    "num_key_value_heads": 5,
    "hidden_act": "relu2",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "tie_word_embeddings": False,
    "attention_bias": False,
}
DEFAULT_ROPE_THETA = 500000.0
FFN_ACTIVATIONS = {"relu2": "relu2", "silu": "silu", "swish": "silu"}  # ACT2FN names -> ModelConfig
# HF module path of each projection (relative to model.layers.{i}.) -> LayerWeights field.
PROJECTIONS = {
    "self_attn.q_proj": "wq",
    "self_attn.k_proj": "wk",
    "self_attn.v_proj": "wv",
    "self_attn.o_proj": "wo",
    "mlp.gate_proj": "w_gate",
    "mlp.up_proj": "w_up",
    "mlp.down_proj": "w_down",
}
NORMS = {
    "input_layernorm": "attn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.ffn_sub_norm": "ffn_sub_norm",
}
LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.")
# Keys a checkpoint may carry that transformers drops silently and that do not change the math.
IGNORABLE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
# Rows per chunk when ternarizing/repacking: bounds the temporary float32/uint8 memory per tensor.
CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class BitNetQuant:
    """The parts of `quantization_config` that decide how the linear weights are read."""

    linear_class: str  # "autobitlinear" | "bitlinear"
    mode: str  # "online" | "offline"


@dataclass
class HFModelParts:
    """Everything `load_hf_folder` reads, before it is wrapped into a `LoadedModel`."""

    config: ModelConfig
    weights: ModelWeights
    checkpoint: SafetensorsCheckpoint
    raw_config: dict
    quant: BitNetQuant
    interpretation: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- config.json


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFormatError(f"{path}: missing (a Hugging Face model folder needs it)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


class _ConfigReader:
    """Typed access to config.json fields with transformers' defaults and errors naming the field."""

    def __init__(self, path: Path, doc: dict) -> None:
        self.path = path
        self.doc = doc
        self.defaulted: list[str] = []

    def get(self, key: str) -> object:
        if key in self.doc:
            return self.doc[key]
        self.defaulted.append(key)
        return CONFIG_DEFAULTS[key]

    def fail(self, key: str, expected: str, found: object) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: field {key!r}: expected {expected}, found {found!r:.200}")

    def positive_int(self, key: str) -> int:
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(key, "a positive integer", value)
        return value

    def positive_float(self, key: str) -> float:
        value = self.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf"):
            raise self.fail(key, "a positive finite number", value)
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def token_ids(self, key: str) -> tuple[int, ...]:
        value = self.get(key)
        if value is None:
            return ()
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise self.fail(key, "a token id, a list of token ids or null", value)
        return tuple(values)


def _module_not_converted(module: str, patterns: list[str]) -> bool:
    """transformers' `should_convert_module` rule: a pattern matches from the start up to a module
    boundary (also as a regex), or as a suffix."""
    boundary = r"(?:(?<=\.)|(?=\.|$))"
    for key in patterns:
        try:
            if re.match(rf"(?:{key}){boundary}", module):
                return True
        except re.error:
            pass
        if module.endswith(key):
            return True
    return False


def _parse_quantization(cfg: _ConfigReader, n_layer: int, tied: bool, notes: list[str]) -> BitNetQuant:
    qc = cfg.doc.get("quantization_config")
    where = f"{cfg.path}: quantization_config"
    if qc is None:
        raise ModelFormatError(
            f"{where}: missing. Without it transformers builds plain float nn.Linear layers; Tritium serves "
            "BitNet b1.58 checkpoints only (expected quant_method 'bitnet')"
        )
    if not isinstance(qc, dict):
        raise ModelFormatError(f"{where}: expected an object, found {qc!r:.200}")
    if qc.get("quant_method") != "bitnet":
        raise ModelFormatError(
            f"{where}: field 'quant_method': expected 'bitnet', found {qc.get('quant_method')!r}"
        )
    linear_class = qc.get("linear_class", "bitlinear")
    if linear_class not in ("bitlinear", "autobitlinear"):
        raise ModelFormatError(
            f"{where}: field 'linear_class': expected 'bitlinear' or 'autobitlinear', found {linear_class!r}"
        )
    mode = qc.get("quantization_mode", "offline")
    if mode not in ("online", "offline"):
        raise ModelFormatError(
            f"{where}: field 'quantization_mode': expected 'online' or 'offline', found {mode!r}"
        )
    if qc.get("use_rms_norm", False):
        raise ModelFormatError(
            f"{where}: field 'use_rms_norm': true (an extra RMSNorm before every quantized linear) is not "
            "supported; expected false"
        )
    skip = qc.get("modules_to_not_convert")
    if skip is not None:
        if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
            raise ModelFormatError(
                f"{where}: field 'modules_to_not_convert': expected a list of strings, found {skip!r}"
            )
        for i in range(n_layer):
            for proj in PROJECTIONS:
                module = f"model.layers.{i}.{proj}"
                if _module_not_converted(module, skip):
                    raise ModelFormatError(
                        f"{where}: field 'modules_to_not_convert' keeps {module} in float; "
                        "Tritium needs every projection ternary"
                    )
        if not tied and not _module_not_converted("lm_head", skip):
            # An explicit list replaces transformers' automatic one, so lm_head would become a BitLinear.
            raise ModelFormatError(
                f"{where}: field 'modules_to_not_convert' = {skip} does not exclude lm_head, so transformers "
                "would quantize the output layer; not supported (expected 'lm_head' in the list)"
            )
    if linear_class == "bitlinear":
        notes.append(
            "quantization: legacy BitLinear (linear_class 'bitlinear'): packed uint8 weights, "
            "y = x_int8 @ T / (weight_scale * act_scale), so the dequant scale is 1/weight_scale"
            + ("; quantization_mode 'online' is ignored by this class" if mode == "online" else "")
        )
    elif mode == "online":
        notes.append(
            "quantization: AutoBitLinear online: float master weights ternarized once at load "
            "(absmean per tensor, exactly as transformers' WeightQuant)"
        )
    else:
        notes.append("quantization: AutoBitLinear offline: ternary weights, y = (xq @ T) * weight_scale")
    return BitNetQuant(linear_class, mode)


def _parse_rope(cfg: _ConfigReader, notes: list[str]) -> float:
    doc = cfg.doc
    params = doc.get("rope_scaling") or doc.get("rope_parameters") or {}
    source = "rope_scaling" if doc.get("rope_scaling") else "rope_parameters"
    if not isinstance(params, dict):
        raise ModelFormatError(
            f"{cfg.path}: field {source!r}: expected an object or null, found {params!r:.200}"
        )
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ModelFormatError(
            f"{cfg.path}: field {source!r}: rope_type {rope_type!r} is not supported (expected 'default': "
            "unscaled rotary embedding)"
        )
    theta = params.get("rope_theta", doc.get("rope_theta", DEFAULT_ROPE_THETA))
    if not isinstance(theta, int | float) or isinstance(theta, bool) or not 0 < theta < float("inf"):
        raise ModelFormatError(
            f"{cfg.path}: field 'rope_theta': expected a positive finite number, found {theta!r}"
        )
    if "rope_theta" not in params and "rope_theta" not in doc:
        notes.append(f"rope: rope_theta absent, using BitNetConfig.default_theta {DEFAULT_ROPE_THETA:g}")
    notes.append(f"rope: default (NeoX rotate_half pairs j, j+d/2), theta {float(theta):g}, all head dims")
    return float(theta)


def _read_generation_eos(folder: Path) -> tuple[int, ...]:
    path = folder / GENERATION_CONFIG_NAME
    if not path.is_file():
        return ()
    doc = _read_json(path)
    value = doc.get("eos_token_id")
    values = value if isinstance(value, list) else [value]
    return tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def parse_hf_config(folder: Path, notes: list[str], layers_in_checkpoint: int | None = None
                    ) -> tuple[ModelConfig, BitNetQuant, dict]:
    """Map config.json (BitNetConfig) to a ModelConfig; reject what the engine cannot reproduce.

    `layers_in_checkpoint` (the number of `model.layers.N` blocks the weights hold), when given, must
    equal num_hidden_layers: checked early so a lying layer count cannot make the loader loop long.
    """
    path = Path(folder) / CONFIG_NAME
    doc = _read_json(path)
    cfg = _ConfigReader(path, doc)
    model_type = doc.get("model_type")
    archs = doc.get("architectures")
    if model_type != "bitnet" and not (isinstance(archs, list) and ARCH in archs):
        raise ModelFormatError(
            f"{path}: field 'model_type': expected 'bitnet' (architectures [{ARCH!r}]), found "
            f"model_type {model_type!r}, architectures {archs!r:.200}"
        )
    if model_type is not None and model_type != "bitnet":
        raise ModelFormatError(f"{path}: field 'model_type': expected 'bitnet', found {model_type!r}")

    n_vocab = cfg.positive_int("vocab_size")
    n_embd = cfg.positive_int("hidden_size")
    n_ff = cfg.positive_int("intermediate_size")
    n_layer = cfg.positive_int("num_hidden_layers")
    if layers_in_checkpoint is not None and n_layer != layers_in_checkpoint:
        expected = f"{layers_in_checkpoint} (the blocks model.layers.N in the weights)"
        raise cfg.fail("num_hidden_layers", expected, n_layer)
    n_head = cfg.positive_int("num_attention_heads")
    kv_null = doc.get("num_key_value_heads", 0) is None  # BitNetConfig: None means MHA
    n_head_kv = n_head if kv_null else cfg.positive_int("num_key_value_heads")
    if n_head % n_head_kv:
        raise cfg.fail("num_key_value_heads", f"a divisor of num_attention_heads ({n_head})", n_head_kv)
    head_dim = doc.get("head_dim")
    if head_dim is None:
        if n_embd % n_head:
            raise cfg.fail("hidden_size", f"a multiple of num_attention_heads ({n_head})", n_embd)
        head_dim = n_embd // n_head
    elif not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim <= 0:
        raise cfg.fail("head_dim", "a positive integer or null", head_dim)
    if n_head * head_dim != n_embd:
        # attn_sub_norm has hidden_size weights and normalizes the n_head*head_dim attention output.
        raise cfg.fail("head_dim", f"hidden_size / num_attention_heads = {n_embd / n_head:g} "
                       "(attn_sub_norm spans hidden_size)", head_dim)
    if head_dim % 2:
        raise cfg.fail("head_dim", "an even number (rotary pairs)", head_dim)
    act = cfg.get("hidden_act")
    if not isinstance(act, str) or act not in FFN_ACTIVATIONS:
        raise cfg.fail("hidden_act", f"one of {sorted(FFN_ACTIVATIONS)}", act)
    if cfg.boolean("attention_bias"):
        raise cfg.fail("attention_bias", "false (BitNet has no q/k/v/o biases)", True)
    tied = cfg.boolean("tie_word_embeddings")
    rms_eps = cfg.positive_float("rms_norm_eps")
    n_ctx = cfg.positive_int("max_position_embeddings")
    rope_theta = _parse_rope(cfg, notes)
    quant = _parse_quantization(cfg, n_layer, tied, notes)

    bos = cfg.token_ids("bos_token_id")
    eos = cfg.token_ids("eos_token_id")
    for extra in _read_generation_eos(Path(folder)):
        if extra not in eos:
            eos = (*eos, extra)
    dropped = [t for t in (*bos, *eos) if t >= n_vocab]
    if dropped:
        notes.append(f"special ids {dropped} are outside the vocabulary of {n_vocab} and are ignored")
    bos_id = bos[0] if bos and bos[0] < n_vocab else None
    eos = tuple(t for t in eos if t < n_vocab)
    if cfg.defaulted:
        notes.append(f"config.json: absent fields take BitNetConfig defaults: {', '.join(cfg.defaulted)}")
    notes.append(
        f"FFN: {FFN_ACTIVATIONS[act]}(gate) * up ({'relu(x)^2' if act == 'relu2' else 'x*sigmoid(x)'}), "
        "sub-norms before o_proj and down_proj"
    )
    notes.append(
        "activations: per-token absmax int8 fake-quant before every projection "
        "(s = 127/clamp(max|x|, 1e-5), round half to even, clamp to [-128, 127])"
    )
    notes.append("output: tied to the token embedding" if tied else "output: separate lm_head.weight")

    config = ModelConfig(
        arch=ARCH,
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=n_ff,
        n_ctx=n_ctx,
        head_dim=head_dim,
        n_rot=head_dim,
        rms_eps=rms_eps,
        rope_base=rope_theta,
        ffn_act=FFN_ACTIVATIONS[act],  # type: ignore[arg-type]
        act_quant="absmax_token",
        tie_embeddings=tied,
        fp16_kv_reference=False,
        bos_token_id=bos_id,
        eos_token_ids=eos,
        extra={
            "linear_class": quant.linear_class,
            "quantization_mode": quant.mode,
            "dtype": doc.get("dtype", doc.get("torch_dtype")),
        },
    )
    return config, quant, doc


# ------------------------------------------------------------------------------------ ternary repacking


def pack_runtime_codes(codes: np.ndarray) -> np.ndarray:
    """Pack codes (uint8 0/1/2 = -1/0/+1, [rows, in], in % 128 == 0) into the `TernaryWeight` layout.

    Byte j of each 32-byte group holds values j, 32+j, 64+j, 96+j at I2S_PLANE_SHIFTS.
    """
    rows, cols = codes.shape
    g = codes.reshape(rows, cols // GROUP, 4, GROUP_BYTES)
    s0, s1, s2, s3 = I2S_PLANE_SHIFTS
    packed = (g[:, :, 0] << s0) | (g[:, :, 1] << s1) | (g[:, :, 2] << s2) | (g[:, :, 3] << s3)
    return packed.reshape(rows, cols // 4)


def _row_chunks(rows: int, cols: int) -> range:
    return range(0, rows, max(1, CHUNK_VALUES // max(cols, 1)))


def absmean_scale(rows_of: Callable[[int, int], np.ndarray], rows: int, cols: int) -> np.float32:
    """transformers' WeightQuant scale `sc = 1 / clamp(mean|W32|, 1e-5)` as float32.

    The mean is accumulated in float64 and rounded once to float32 (torch reduces in float32 with
    pairwise sums; both give the correctly rounded mean up to the last ulp).
    """
    total = 0.0
    chunks = _row_chunks(rows, cols)
    for r in chunks:
        total += float(np.abs(rows_of(r, min(rows, r + chunks.step))).sum(dtype=np.float64))
    mean = np.float32(total / (rows * cols))
    return np.float32(1.0) / max(mean, np.float32(1e-5))


def ternarize_online(where: str, rows_of: Callable[[int, int], np.ndarray], rows: int, cols: int
                     ) -> tuple[np.ndarray, float]:
    """Ternarize a float master weight exactly as WeightQuant does; return (runtime codes, 1/sc)."""
    sc = absmean_scale(rows_of, rows, cols)
    out = np.empty((rows, cols // 4), dtype=np.uint8)
    chunks = _row_chunks(rows, cols)
    for r in chunks:
        stop = min(rows, r + chunks.step)
        w = rows_of(r, stop)
        if not np.all(np.isfinite(w)):
            raise ModelFormatError(f"{where}: non-finite values in rows {r}..{stop}")
        t = np.clip(np.rint(w * sc), -1, 1).astype(np.int8)  # rint rounds half to even, like torch.round
        out[r:stop] = pack_runtime_codes((t + 1).astype(np.uint8))
    return out, float(np.float32(1.0) / sc)


def repack_hf_packed(where: str, packed: np.ndarray, out_features: int) -> np.ndarray:
    """Repack transformers' uint8 [out/4, in] (four row blocks of 2-bit codes) into runtime codes.

    Row block i (rows i*R .. i*R+R-1, R = out/4) sits in bits 2i..2i+1. Processed in row chunks so
    the temporary memory stays small; code 3 (unused by the format) is rejected.
    """
    R, cols = packed.shape
    out = np.empty((out_features, cols // 4), dtype=np.uint8)
    chunks = _row_chunks(R, cols)
    for r in chunks:
        stop = min(R, r + chunks.step)
        block = np.asarray(packed[r:stop])
        for i in range(4):
            codes = (block >> (2 * i)) & 3
            if (codes == 3).any():
                bad = np.argwhere(codes == 3)[0]
                raise ModelFormatError(
                    f"{where}: packed byte [{r + bad[0]}, {bad[1]}] holds code 3 in bits "
                    f"{2 * i}..{2 * i + 1}; expected 0/1/2 (-1/0/+1)"
                )
            out[i * R + r : i * R + stop] = pack_runtime_codes(codes)
    return out


def pack_unpacked_ternary(where: str, rows_of: Callable[[int, int], np.ndarray], rows: int, cols: int
                          ) -> np.ndarray:
    """Runtime codes of a float [out, in] matrix that must hold only -1, 0 and +1."""
    out = np.empty((rows, cols // 4), dtype=np.uint8)
    chunks = _row_chunks(rows, cols)
    for r in chunks:
        stop = min(rows, r + chunks.step)
        w = rows_of(r, stop)
        if not np.isin(w, (-1.0, 0.0, 1.0)).all():
            bad = np.argwhere(~np.isin(w, (-1.0, 0.0, 1.0)))[0]
            raise ModelFormatError(
                f"{where}: value {float(w[tuple(bad)])!r} at [{r + bad[0]}, {bad[1]}] is not ternary; an "
                "offline checkpoint stores -1/0/+1 (float master weights need quantization_mode 'online')"
            )
        out[r:stop] = pack_runtime_codes((w.astype(np.int8) + 1).astype(np.uint8))
    return out


# ------------------------------------------------------------------------------------------- weights


class _WeightReader:
    """Reads tensors of a checkpoint by HF name, checking dtype and shape, and tracks which were used."""

    def __init__(self, ckpt: SafetensorsCheckpoint, notes: list[str]) -> None:
        self.ckpt = ckpt
        self.notes = notes
        self.used: set[str] = set()

    def require(self, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...], why: str = "") -> str:
        if name not in self.ckpt:
            raise ModelFormatError(f"{self.ckpt.folder}: tensor {name!r} is missing{why}")
        entry = self.ckpt.entry(name)
        if entry.dtype not in dtypes:
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: dtype {entry.dtype}, expected one of {dtypes}{why}"
            )
        if entry.shape != shape:
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: shape {list(entry.shape)}, "
                f"expected {list(shape)} from config.json{why}"
            )
        self.used.add(name)
        return entry.dtype

    def float_vector(self, name: str, size: int) -> np.ndarray:
        dtype = self.require(name, (size,), FLOAT_DTYPES)
        return np.ascontiguousarray(to_float32(self.ckpt.array(name), dtype), dtype=np.float32)

    def matrix(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """A dense float matrix: a memory-mapped view for F32/F16, a float32 copy for BF16/F64."""
        dtype = self.require(name, shape, FLOAT_DTYPES)
        raw = self.ckpt.array(name)
        if dtype in ("F32", "F16"):
            return raw
        return to_float32(raw, dtype)

    def scalar_scale(self, name: str) -> float:
        if name not in self.ckpt:
            raise ModelFormatError(
                f"{self.ckpt.folder}: tensor {name!r} is missing (offline checkpoints need it)"
            )
        entry = self.ckpt.entry(name)
        if entry.dtype not in FLOAT_DTYPES:
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: dtype {entry.dtype}, expected a float dtype"
            )
        if entry.shape not in ((1,), ()):
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: shape {list(entry.shape)}, "
                "expected [1] (one scale per tensor)"
            )
        self.used.add(name)
        value = float(to_float32(self.ckpt.array(name), entry.dtype).reshape(-1)[0])
        if not np.isfinite(value) or value <= 0:
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: scale {value!r}, expected a finite positive number"
            )
        return value


def _ternary_weight(reader: _WeightReader, quant: BitNetQuant, module: str, out_f: int, in_f: int
                    ) -> TernaryWeight:
    name = f"{module}.weight"
    ckpt = reader.ckpt
    if in_f % GROUP:
        raise ModelFormatError(
            f"{ckpt.folder}: tensor {name!r}: in_features {in_f} is not a multiple of {GROUP}, "
            "which Tritium's 2-bit ternary layout needs"
        )
    if name not in ckpt:
        raise ModelFormatError(f"{ckpt.folder}: tensor {name!r} is missing")
    entry = ckpt.entry(name)
    where = f"{entry.file}: tensor {name!r}"
    packed_shape = (out_f // 4, in_f)

    def rows_of(a: int, b: int) -> np.ndarray:
        return to_float32(np.asarray(ckpt.array(name)[a:b]), entry.dtype)

    if quant.linear_class == "autobitlinear" and quant.mode == "online":
        if entry.dtype == "U8":
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: packed U8 {list(entry.shape)} but quantization_mode "
                f"is 'online', which expects float master weights {[out_f, in_f]}"
            )
        reader.require(name, (out_f, in_f), FLOAT_DTYPES)
        if f"{module}.weight_scale" in ckpt:
            reader.used.add(f"{module}.weight_scale")  # transformers drops it too (unexpected key)
        codes, scale = ternarize_online(where, rows_of, out_f, in_f)
    elif entry.dtype == "U8" or quant.linear_class == "bitlinear":
        if out_f % 4:
            raise ModelFormatError(
                f"{entry.file}: tensor {name!r}: out_features {out_f} is not a multiple of 4"
            )
        reader.require(name, packed_shape, ("U8",),
                       f" (packed U8 [out/4, in] for {quant.linear_class} {quant.mode})")
        codes = repack_hf_packed(where, ckpt.array(name), out_f)
        ws = reader.scalar_scale(f"{module}.weight_scale")
        scale = ws if quant.linear_class == "autobitlinear" else float(np.float32(1.0) / np.float32(ws))
    else:
        reader.require(name, (out_f, in_f), FLOAT_DTYPES,
                        f" (expected packed U8 {list(packed_shape)} or ternary float {[out_f, in_f]})")
        codes = pack_unpacked_ternary(where, rows_of, out_f, in_f)
        scale = reader.scalar_scale(f"{module}.weight_scale")
    return TernaryWeight(
        name=name,
        out_features=out_f,
        in_features=in_f,
        codes=codes,
        plane_shifts=I2S_PLANE_SHIFTS,
        block_scales=np.full((out_f, 1), scale, dtype=np.float32),
        scale_block=in_f,
    )


def _describe_linear_storage(ckpt: SafetensorsCheckpoint, quant: BitNetQuant) -> str:
    entry = ckpt.entry("model.layers.0.self_attn.q_proj.weight")
    if quant.linear_class == "autobitlinear" and quant.mode == "online":
        form = f"float master weights ({entry.dtype})"
    elif entry.dtype == "U8":
        form = "packed uint8 [out/4, in] (four row blocks, code 0/1/2 = -1/0/+1) + weight_scale"
    else:
        form = f"unpacked ternary {entry.dtype} [out, in] + weight_scale"
    return (f"linear weights: {form}, repacked once into 128-value 2-bit groups (I2_S plane order), "
            "one scale per tensor")


def read_hf_weights(ckpt: SafetensorsCheckpoint, config: ModelConfig, quant: BitNetQuant,
                    notes: list[str]) -> ModelWeights:
    """Check every tensor name and shape against `config` and build the runtime weights."""
    reader = _WeightReader(ckpt, notes)
    H, F, V = config.n_embd, config.n_ff, config.n_vocab
    q_out, kv_out = config.n_head * config.head_dim, config.n_embd_kv
    shapes = {
        "self_attn.q_proj": (q_out, H),
        "self_attn.k_proj": (kv_out, H),
        "self_attn.v_proj": (kv_out, H),
        "self_attn.o_proj": (H, q_out),
        "mlp.gate_proj": (F, H),
        "mlp.up_proj": (F, H),
        "mlp.down_proj": (H, F),
    }
    norm_sizes = {"input_layernorm": H, "self_attn.attn_sub_norm": H, "post_attention_layernorm": H,
                  "mlp.ffn_sub_norm": F}
    if "model.layers.0.self_attn.q_proj.weight" in ckpt:
        notes.append(_describe_linear_storage(ckpt, quant))

    token_embd = reader.matrix("model.embed_tokens.weight", (V, H))
    embd_dtype = ckpt.entry("model.embed_tokens.weight").dtype
    notes.append(
        f"token_embd: {embd_dtype} "
        + ("memory-mapped" if embd_dtype in ("F32", "F16")
           else "widened to float32 once (float16 cannot hold every bf16 value)")
    )
    layers = []
    for i in range(config.n_layer):
        prefix = f"model.layers.{i}."
        linears = {
            field_name: _ternary_weight(reader, quant, prefix + module, *shapes[module])
            for module, field_name in PROJECTIONS.items()
        }
        norms = {field_name: reader.float_vector(f"{prefix}{module}.weight", norm_sizes[module])
                 for module, field_name in NORMS.items()}
        layers.append(LayerWeights(**norms, **linears))
    output_norm = reader.float_vector("model.norm.weight", H)

    output = None
    if config.tie_embeddings:
        if "lm_head.weight" in ckpt:
            reader.used.add("lm_head.weight")
            notes.append("lm_head.weight is present but tie_word_embeddings is true: ignored, "
                         "as transformers does")
    else:
        output = reader.matrix("lm_head.weight", (V, H)) if "lm_head.weight" in ckpt else None
        if output is None:
            raise ModelFormatError(
                f"{ckpt.folder}: tensor 'lm_head.weight' is missing but config.json sets tie_word_embeddings "
                "false (transformers would initialize it randomly)"
            )

    leftover = sorted(n for n in ckpt.owner if n not in reader.used and not IGNORABLE.search(n))
    if leftover:
        shown = ", ".join(repr(n) for n in leftover[:5])
        more = f" and {len(leftover) - 5} more" if len(leftover) > 5 else ""
        raise ModelFormatError(
            f"{ckpt.folder}: unexpected tensors for a {config.n_layer}-layer BitNetForCausalLM: {shown}{more}"
        )
    return ModelWeights(token_embd=token_embd, output_norm=output_norm, layers=layers, output=output,
                        keep_alive=list(ckpt.files))


# ------------------------------------------------------------------------------------------- loading


def count_layers(ckpt: SafetensorsCheckpoint) -> int:
    """Number of transformer blocks in the checkpoint: 1 + the highest N of `model.layers.N.*`."""
    found = [int(m.group(1)) for n in ckpt.owner if (m := LAYER_NAME.match(n))]
    return max(found) + 1 if found else 0


def read_hf_folder(path: Path | str) -> HFModelParts:
    """Parse config.json and the safetensors weights of a BitNetForCausalLM folder (no tokenizer)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: not a directory (a Hugging Face model folder is expected)")
    notes: list[str] = []
    _read_json(folder / CONFIG_NAME)  # a missing or broken config.json is reported before the weights
    ckpt = open_checkpoint(folder)
    config, quant, raw = parse_hf_config(folder, notes, count_layers(ckpt))
    files = ", ".join(f.path.name for f in ckpt.files)
    notes.insert(0, f"format: Hugging Face {ARCH} folder, weights in {files}"
                 + (f" (sharded, index {ckpt.index.name})" if ckpt.index else ""))
    weights = read_hf_weights(ckpt, config, quant, notes)
    return HFModelParts(config=config, weights=weights, checkpoint=ckpt, raw_config=raw, quant=quant,
                        interpretation=notes)


def load_hf_folder(path: Path | str) -> LoadedModel:
    """Load a BitNetForCausalLM folder: config, runtime weights, tokenizer, tensor table and notes."""
    from tritium.core.model.loader import LoadedModel, TensorInfo
    from tritium.core.tokenizer import from_hf_folder

    parts = read_hf_folder(path)
    tokenizer = from_hf_folder(Path(path))
    config = parts.config
    add_bos = getattr(tokenizer, "add_bos", config.add_bos)
    if add_bos != config.add_bos:
        config = replace(config, add_bos=bool(add_bos))
    tensors = [
        TensorInfo(name=e.name, type_name=e.dtype, ggml_shape=tuple(reversed(e.shape)), nbytes=e.nbytes,
                   offset=e.begin)
        for e in sorted(parts.checkpoint.entries.values(), key=lambda e: (str(e.file), e.begin))
    ]
    metadata: dict[str, object] = {"config.json": parts.raw_config}
    for f in parts.checkpoint.files:
        if f.metadata:
            metadata[f"{f.path.name}:__metadata__"] = f.metadata
    return LoadedModel(path=Path(path), format="hf", config=config, weights=parts.weights,
                       tokenizer=tokenizer, tensors=tensors, metadata=metadata,
                       interpretation=parts.interpretation)
