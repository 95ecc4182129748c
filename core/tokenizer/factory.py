"""Building the right Tokenizer from what a model file or folder provides."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

from tritium.core.tokenizer.gguf_vocab import parse_gguf_vocab
from tritium.core.tokenizer.interface import Tokenizer


def from_gguf_metadata(meta: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer a GGUF file's metadata describes (`tokenizer.ggml.model` "llama" → SPM, "gpt2" →
    byte-level BPE). `meta` maps keys to Python values (arrays as lists or numpy arrays).
    Raises TokenizerError naming the key for missing or malformed metadata."""
    vocab = parse_gguf_vocab(meta)
    if vocab.model == "llama":
        from tritium.core.tokenizer.spm import SPMTokenizer
        return SPMTokenizer(vocab)
    from tritium.core.tokenizer.bpe import BPETokenizer
    return BPETokenizer(vocab)


def from_hf_folder(path: str | PathLike[str]) -> Tokenizer:
    """The tokenizer of a Hugging Face model folder (tokenizer.json + tokenizer_config.json, chat template
    from tokenizer_config.json, chat_template.jinja or chat_template.json)."""
    from tritium.core.tokenizer.hf_json import HFTokenizer
    return HFTokenizer.from_folder(path)
