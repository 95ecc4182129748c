"""Write BitNet GGUF files: llama.cpp `bitnet` (TQ1_0/TQ2_0), bitnet.cpp I2_S (`bitnet-b1.58`/`bitnet`,
type id 36, file_type 40), and F16/F32/BF16/Q8_0 — for tests, the demo model, benchmarks and the quantizer.

`write_gguf` is the generic layer on `gguf.GGUFWriter`: metadata in the given order, then tensors
streamed one at a time (only one encoded tensor is in memory, so large files work). bitnet.cpp's type 36
is unknown to PyPI gguf; it is written by handing GGUFWriter the raw id with an element shape (GGUFWriter
packs the id as a plain u32), and the byte size is the I2_S rule K*M/4 + 32.

`write_bitnet_gguf` lays out a whole model the way the peers' converters do (key order, tensor order,
32-byte alignment), so that an I2_S file of the same weights is byte-identical to what bitnet.cpp's
`llama-quantize ... I2_S` writes (checked against tests/fixtures/bitnetcpp).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from gguf.constants import GGUFValueType
from gguf.gguf_writer import GGUFWriter
from tritium.core.formats.bitnet_tensors import LINEAR_NAMES, bitnet_shapes, bitnet_tensor_names
from tritium.core.formats.ggml_encode import TernaryMatrix, encode_tensor
from tritium.core.formats.ggml_types import QK_I2_S, QK_K, upstream_type
from tritium.core.model.config import ModelConfig

# general.file_type per linear-weight type (llama.h LLAMA_FTYPE_*; 40 is bitnet.cpp's MOSTLY_I2_S)
FILE_TYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37, "I2_S": 40}
_VTYPES = {"u8": GGUFValueType.UINT8, "i8": GGUFValueType.INT8, "u16": GGUFValueType.UINT16,
           "i16": GGUFValueType.INT16, "u32": GGUFValueType.UINT32, "i32": GGUFValueType.INT32,
           "f32": GGUFValueType.FLOAT32, "bool": GGUFValueType.BOOL, "string": GGUFValueType.STRING,
           "u64": GGUFValueType.UINT64, "i64": GGUFValueType.INT64, "f64": GGUFValueType.FLOAT64}


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write: name, numpy shape [out, in] (or [n]), ggml type, and a producer of its bytes."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    encode: Callable[[], np.ndarray]  # called once, when the tensor is written

    @property
    def nbytes(self) -> int:
        return upstream_type(self.type_name).nbytes(tuple(reversed(self.shape)))


def value_type_of(value: object) -> str:
    """The GGUF value type used for a Python value: bool, u32 (non-negative int < 2^32, else i64), f32,
    string, array[...] (element type from the first element; ints in arrays are i32 as gguf-py does)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "u32" if 0 <= value < 2**32 else "i64"
    if isinstance(value, float):
        return "f32"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        elem = ("bool" if isinstance(first, bool) else "i32" if isinstance(first, int)
                else "f32" if isinstance(first, float) else "string" if isinstance(first, str) else "array")
        return f"array[{elem}]"
    raise TypeError(f"no GGUF value type for {type(value).__name__} {value!r}")


def _add_metadata(w: GGUFWriter, key: str, value: object, vtype: str) -> None:
    if vtype.startswith("array["):
        elem = vtype[6:-1]
        sub = GGUFValueType.ARRAY if elem == "array" else _VTYPES[elem]
        w.add_key_value(key, list(value), GGUFValueType.ARRAY, sub_type=sub)  # type: ignore[arg-type]
    else:
        w.add_key_value(key, value, _VTYPES[vtype])


def write_gguf(path: str | os.PathLike[str], arch: str, metadata: Mapping[str, object],
               tensors: Iterable[TensorPlan], *, value_types: Mapping[str, str] | None = None,
               alignment: int | None = None) -> None:
    """Write a GGUF v3 file: general.architecture = arch, then `metadata` in its order (types from
    `value_types`, e.g. as `GGUFFile.value_types` gives them, else `value_type_of`), then the tensors."""
    plans = list(tensors)
    w = GGUFWriter(os.fspath(path), arch)
    try:
        if alignment is not None:
            w.add_custom_alignment(alignment)
        for key, value in metadata.items():
            if key == "general.architecture":
                continue
            vtype = (value_types or {}).get(key) or value_type_of(value)
            _add_metadata(w, key, value, vtype)
        for p in plans:
            t = upstream_type(p.type_name)
            # GGUFWriter converts byte shapes only for uint8 tensors with a known type; any other dtype
            # keeps the element shape as given, and the type id (36 included) is packed as a u32.
            w.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=t.type_id)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for p in plans:
            data = p.encode()
            if data.dtype != np.uint8 or data.ndim != 1 or data.nbytes != p.nbytes:
                raise ValueError(f"tensor '{p.name}': encoder gave {data.dtype} {data.shape}, expected "
                                 f"{p.nbytes} uint8 bytes for {p.type_name} {list(p.shape)}")
            w.write_tensor_data(data)
    finally:
        w.close()


def bitnet_metadata(config: ModelConfig, *, name: str, file_type: int,
                    tokenizer: Mapping[str, object] | None = None,
                    rope_scaling_keys: bool | None = None) -> dict[str, object]:
    """Metadata in the order BitNet's and llama.cpp's converters write it (quantization_version last, as
    llama-quantize appends it). The `bitnet` arch gets the no-op rope.scaling keys by default."""
    a = config.arch
    md: dict[str, object] = {
        "general.name": name, "general.file_type": file_type,
        f"{a}.vocab_size": config.n_vocab, f"{a}.context_length": config.n_ctx,
        f"{a}.embedding_length": config.n_embd, f"{a}.feed_forward_length": config.n_ff,
        f"{a}.block_count": config.n_layer, f"{a}.attention.head_count": config.n_head,
        f"{a}.attention.head_count_kv": config.n_head_kv,
        f"{a}.attention.layer_norm_rms_epsilon": float(config.rms_eps),
        f"{a}.rope.freq_base": float(config.rope_base), f"{a}.rope.dimension_count": config.n_rot,
    }
    if config.head_dim != config.n_embd // config.n_head:
        md[f"{a}.attention.key_length"] = config.head_dim
        md[f"{a}.attention.value_length"] = config.head_dim
    if rope_scaling_keys if rope_scaling_keys is not None else a == "bitnet":
        md[f"{a}.rope.scaling.type"] = "linear"
        md[f"{a}.rope.scaling.factor"] = 1.0
    md.update(tokenizer or {})
    md["general.quantization_version"] = 2
    return md


def write_bitnet_gguf(path: str | os.PathLike[str], config: ModelConfig,
                      weights: Mapping[str, np.ndarray | TernaryMatrix], *, linear_type: str = "TQ2_0",
                      embd_type: str = "F16", norm_type: str = "F32",
                      tokenizer: Mapping[str, object] | None = None,
                      name: str = "tritium-bitnet", scale_tensors: bool = False,
                      rope_scaling_keys: bool | None = None) -> None:
    """Write a BitNet model. `weights` maps GGUF tensor names to numpy [out, in] floats or TernaryMatrix
    (a Mapping that builds values on access keeps memory to one tensor). `output.weight` is written only
    if present (else the lm_head is tied). linear_type: TQ1_0/TQ2_0 (arch `bitnet`), I2_S (bitnet.cpp),
    F16/F32/BF16/Q8_0 (dense). scale_tensors (TQ types): store each TernaryMatrix with d = 1 in the blocks
    and its scale in a `<w>.scale` {1} F32 tensor, the alternative llama.cpp form."""
    if linear_type not in FILE_TYPES:
        raise ValueError(f"linear_type must be one of {sorted(FILE_TYPES)}, got {linear_type}")
    if scale_tensors and linear_type not in ("TQ1_0", "TQ2_0"):
        raise ValueError("scale_tensors is a llama.cpp TQ1_0/TQ2_0 form")
    shapes = bitnet_shapes(config)
    given = set(weights)  # names only: a lazy Mapping's `in` may build the tensor
    names = bitnet_tensor_names(config.n_layer, with_output="output.weight" in given)
    unknown = sorted(given - set(names))
    if unknown:
        raise ValueError(f"unexpected tensors {unknown[:5]}")
    block = {"TQ1_0": QK_K, "TQ2_0": QK_K, "I2_S": QK_I2_S, "Q8_0": 32}.get(linear_type, 1)

    plans: list[TensorPlan] = []
    for tname in names:
        if tname not in given:
            raise ValueError(f"missing tensor '{tname}'")
        shape = shapes[tname]
        role = tname.split(".")[-2]
        if role in LINEAR_NAMES:
            if shape[1] % block:
                raise ValueError(f"'{tname}': {linear_type} needs the input dim to be a multiple of {block},"
                                 f" got {shape[1]}")
            plans += _linear_plans(tname, shape, linear_type, weights, scale_tensors)
        else:
            ttype = embd_type if tname in ("token_embd.weight", "output.weight") else norm_type
            plans.append(TensorPlan(tname, shape, ttype, _float_encoder(weights, tname, shape, ttype)))
    md = bitnet_metadata(config, name=name, file_type=FILE_TYPES[linear_type], tokenizer=tokenizer,
                         rope_scaling_keys=rope_scaling_keys)
    write_gguf(path, config.arch, md, plans)


def _checked(weights: Mapping[str, np.ndarray | TernaryMatrix], tname: str,
             shape: tuple[int, ...]) -> np.ndarray | TernaryMatrix:
    w = weights[tname]
    got = w.values.shape if isinstance(w, TernaryMatrix) else np.shape(w)
    if tuple(got) != shape:
        raise ValueError(f"tensor '{tname}': expected shape {list(shape)}, got {list(got)}")
    return w


def _float_encoder(weights: Mapping[str, np.ndarray | TernaryMatrix], tname: str, shape: tuple[int, ...],
                   ttype: str) -> Callable[[], np.ndarray]:
    return lambda: encode_tensor(_checked(weights, tname, shape), ttype)


def _linear_plans(tname: str, shape: tuple[int, ...], ttype: str,
                  weights: Mapping[str, np.ndarray | TernaryMatrix], scale_tensors: bool) -> list[TensorPlan]:
    if not scale_tensors:
        return [TensorPlan(tname, shape, ttype, _float_encoder(weights, tname, shape, ttype))]

    def unit_blocks() -> np.ndarray:
        w = _checked(weights, tname, shape)
        if not isinstance(w, TernaryMatrix):
            raise ValueError(f"'{tname}': scale_tensors needs a TernaryMatrix")
        return encode_tensor(w.values.astype(np.float32), ttype)

    def scale() -> np.ndarray:
        w = weights[tname]
        assert isinstance(w, TernaryMatrix)
        return np.array([w.scale], dtype=np.float32).view(np.uint8)

    base = tname[: -len(".weight")]
    return [TensorPlan(tname, shape, ttype, unit_blocks), TensorPlan(base + ".scale", (1,), "F32", scale)]


def spm_test_vocab(n_vocab: int) -> dict[str, object]:
    """Tokenizer metadata of the deterministic SentencePiece ("llama") test vocab the fixtures use:
    0 <unk> (UNKNOWN), 1 <s>, 2 </s> (CONTROL), 3..258 <0x00>..<0xFF> (BYTE), then NORMAL pieces '▁',
    'a'..'z', '▁a'..'▁z', '▁w<i>' with score -(i+1). unk/bos/eos = 0/1/2, add_bos true, add_eos false."""
    if n_vocab < 259:
        raise ValueError(f"the test vocab needs at least 259 tokens (specials + bytes), got {n_vocab}")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    pieces = ["\u2581"] + [chr(c) for c in range(97, 123)] + ["\u2581" + chr(c) for c in range(97, 123)]
    i = 0
    while len(tokens) < n_vocab:
        tokens.append(pieces[i] if i < len(pieces) else f"\u2581w{i}")
        types.append(1)
        scores.append(-float(i + 1))
        i += 1
    return {
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
    }
