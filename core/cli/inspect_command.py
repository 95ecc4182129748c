"""`tritium inspect PATH`: what a model file holds and how Tritium reads it.

Architecture and hyper-parameters, the tokenizer, every tensor (type, shape, bytes), the loader's own
account of how it interpreted the file, and what the engine supports for it. `--json` gives the same as
one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from tritium.core.formats.gguf_model import ARCHES
from tritium.core.formats.runtime_layout import FLOAT_TYPES, TERNARY_TYPES

# What the loader accepts: its own tables, so this report cannot drift from the code.
SUPPORTED_TENSOR_TYPES = (*FLOAT_TYPES, *TERNARY_TYPES)
SUPPORTED_ARCHS = (*ARCHES, "BitNetForCausalLM")
# Said plainly so nobody has to find out by trial.
NOT_SUPPORTED = (
    "architectures other than BitNet b1.58 (" + ", ".join(SUPPORTED_ARCHS) + ")",
    "weight types other than " + ", ".join(SUPPORTED_TENSOR_TYPES) + " (e.g. bitnet.cpp TL1/TL2, Q4_K)",
    "LoRA adapters, multimodal inputs, speculative decoding",
)
ACT_QUANT_MEANING = {
    "q8_k": "int8 per 256-value block (llama.cpp TQ1_0/TQ2_0)",
    "i8_s": "int8 per token (bitnet.cpp I2_S)",
    "absmax_token": "int8 fake-quant per token (transformers BitNet)",
    "none": "float activations",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect", help="describe a model file",
        description="Architecture, hyper-parameters, tokenizer, every tensor, how the file was "
                    "interpreted and what the engine supports for it.")
    parser.add_argument("path", metavar="PATH", help="GGUF file or Hugging Face folder")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tritium.core.model.loader import load_model

    report = describe(load_model(Path(args.path)))
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return 0


def describe(model: Any) -> dict[str, Any]:
    """Everything `inspect` reports, as plain JSON-able data."""
    config = model.config
    hparams = {f.name: _plain(getattr(config, f.name)) for f in fields(config)
               if f.name not in ("arch", "extra")}
    tok = model.tokenizer
    tensors = [{"name": t.name, "type": t.type_name, "shape": list(t.ggml_shape), "bytes": int(t.nbytes)}
               for t in model.tensors]
    types = sorted({t["type"] for t in tensors})
    unsupported_types = [t for t in types if t not in SUPPORTED_TENSOR_TYPES]
    path = Path(model.path)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size if path.is_file() else None,
        "format": model.format,
        "interpretation": list(model.interpretation),
        "architecture": config.arch,
        "hyperparameters": hparams,
        "tokenizer": {
            "kind": type(tok).__name__,
            "model": model.metadata.get("tokenizer.ggml.model"),
            "vocab_size": tok.n_vocab,
            "bos_id": tok.bos_id,
            "eos_ids": list(tok.eos_ids),
            "add_bos": tok.add_bos,
            "chat_template": bool(tok.chat_template),
        },
        "tensors": tensors,
        "tensor_bytes": sum(t["bytes"] for t in tensors),
        "support": {
            "supported": _supported_features(config, types, tok),
            "unsupported_in_this_file": [f"tensor type {t}" for t in unsupported_types]
            + ([] if config.arch in SUPPORTED_ARCHS else [f"architecture {config.arch}"]),
            "not_supported_by_the_engine": list(NOT_SUPPORTED),
        },
    }


def _supported_features(config: Any, types: list[str], tok: Any) -> list[str]:
    attention = "multi-head" if config.n_head == config.n_head_kv else \
        f"grouped-query ({config.n_head} query heads over {config.n_head_kv} kv heads)"
    return [
        f"architecture {config.arch}",
        "tensor types " + ", ".join(t for t in types if t in SUPPORTED_TENSOR_TYPES),
        f"activation quantization {config.act_quant}: {ACT_QUANT_MEANING.get(config.act_quant, '?')}",
        f"FFN activation {config.ffn_act}",
        f"{attention} attention, RoPE base {config.rope_base:g} over {config.n_rot} dims",
        "tied embeddings (lm_head = token_embd)" if config.tie_embeddings else "separate output matrix",
        "KV cache f32 or f16",
        "chat: the model's template" if tok.chat_template else "chat: the built-in fallback template",
    ]


def render_text(r: dict[str, Any]) -> str:
    size = f" ({r['file_bytes']:,} bytes)" if r["file_bytes"] is not None else ""
    lines = [f"file:          {r['path']}{size}", f"format:        {r['format']}",
             f"architecture:  {r['architecture']}", "", "how the file was interpreted:"]
    lines += [f"  - {line}" for line in r["interpretation"]] or ["  (the loader said nothing)"]
    lines += ["", "hyper-parameters:"]
    lines += [f"  {k:<20} {v:.7g}" if isinstance(v, float) else f"  {k:<20} {v}"
              for k, v in r["hyperparameters"].items()]
    t = r["tokenizer"]
    lines += ["", "tokenizer:",
              f"  kind                 {t['kind']}" + (f" ({t['model']})" if t["model"] else ""),
              f"  vocab size           {t['vocab_size']}",
              f"  bos id               {t['bos_id']} (added: {'yes' if t['add_bos'] else 'no'})",
              f"  eos ids              {', '.join(map(str, t['eos_ids'])) or 'none'}",
              f"  chat template        {'yes' if t['chat_template'] else 'no'}"]
    lines += ["", f"tensors ({len(r['tensors'])}, {r['tensor_bytes']:,} bytes):"]
    width = max((len(x["name"]) for x in r["tensors"]), default=4)
    lines.append(f"  {'name':<{width}}  {'type':<6}  {'shape':<16}  {'bytes':>12}")
    for x in r["tensors"]:
        shape = "[" + ", ".join(map(str, x["shape"])) + "]"
        lines.append(f"  {x['name']:<{width}}  {x['type']:<6}  {shape:<16}  {x['bytes']:>12,}")
    s = r["support"]
    lines += ["", "supported:"] + [f"  - {x}" for x in s["supported"]]
    lines += ["", "unsupported in this file:"] + ([f"  - {x}" for x in s["unsupported_in_this_file"]]
                                                   or ["  (none)"])
    lines += ["", "not supported by the engine:"] + [f"  - {x}" for x in s["not_supported_by_the_engine"]]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
