"""A Hugging Face tokenizer.json as GGUF `tokenizer.ggml.*` metadata (byte-level BPE -> "gpt2"), so a GGUF
converted from an HF folder carries its own tokenizer, as llama.cpp's convert_hf_to_gguf.py does.

Tokens in id order (vocab plus added tokens), types NORMAL / CONTROL (special added tokens) /
USER_DEFINED (other added tokens), merges as "a b" strings, the pre-tokenizer name chosen from the
pre_tokenizer's regex (GPT-2 ByteLevel -> "gpt-2", llama3 Split -> "llama-bpe"), bos/eos/add_bos and the
chat template from Tritium's HFTokenizer (which reads tokenizer_config.json as transformers does).
SentencePiece-style HF tokenizers are not converted (the GGUF gets no tokenizer; the report says so).
"""

from __future__ import annotations

import json
from pathlib import Path

from tritium.core.model.config import ModelConfig

_LLAMA3_MARK = r"\p{N}{1,3}"


def _pre_name(pre: dict | None) -> str | None:
    if not pre:
        return None
    kind = pre.get("type")
    if kind == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if kind == "Sequence":
        pats = [str((p.get("pattern") or {}).get("Regex", "")) for p in pre.get("pretokenizers", [])
                if p.get("type") == "Split"]
        if any(_LLAMA3_MARK in p for p in pats):
            return "llama-bpe"
    return None


def tokenizer_metadata(folder: Path, config: ModelConfig) -> tuple[dict[str, object], list[str]]:
    """(GGUF tokenizer metadata, notes) for an HF folder; empty metadata (and a note) if not convertible."""
    tj = folder / "tokenizer.json"
    if not tj.is_file():
        return {}, [f"{folder}: no tokenizer.json: the GGUF gets no tokenizer metadata"]
    spec = json.loads(tj.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        return {}, [f"{tj}: tokenizer model {model.get('type')!r} is not byte-level BPE; the GGUF gets no "
                    "tokenizer metadata"]
    pre = _pre_name(spec.get("pre_tokenizer"))
    notes = []
    if pre is None:
        pre = "default"
        notes.append(f"{tj}: pre-tokenizer not recognised; wrote tokenizer.ggml.pre 'default'")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    n = max([*vocab.values(), *added.keys()]) + 1
    n = max(n, config.n_vocab)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [5] * n  # UNUSED until filled
    for text, i in vocab.items():
        tokens[i], types[i] = text, 1
    for i, a in added.items():
        tokens[i], types[i] = a["content"], 3 if a.get("special") else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    from tritium.core.tokenizer.hf_json import HFTokenizer

    tok = HFTokenizer.from_folder(folder)
    md: dict[str, object] = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
                             "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                             "tokenizer.ggml.merges": merges}
    if tok.bos_id is not None:
        md["tokenizer.ggml.bos_token_id"] = tok.bos_id
    if tok.eos_ids:
        md["tokenizer.ggml.eos_token_id"] = tok.eos_ids[0]
    md["tokenizer.ggml.add_bos_token"] = bool(tok.add_bos)
    md["tokenizer.ggml.add_eos_token"] = bool(getattr(tok, "add_eos", False))
    if tok.chat_template:
        md["tokenizer.chat_template"] = tok.chat_template
    notes.append(f"tokenizer: tokenizer.json BPE ({n} tokens, {len(merges)} merges, pre '{pre}') "
                 "written as tokenizer.ggml.model 'gpt2'")
    return md, notes
