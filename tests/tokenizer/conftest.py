"""Helpers for the tokenizer tests: fixture-vocabulary metadata, small synthetic vocabularies, and byte-level
BPE vocabularies trained on the spot with the `tokenizers` library."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tritium.core.formats.gguf_reader import read_gguf

from tests.conftest import BITNETCPP_FIXTURES

# The fixture prompt and its ids as llama-cli / llama_tokenize produced them
# (tests/fixtures/bitnetcpp/README.md).
FIXTURE_PROMPT = "hello world, this is a tiny bitnet test"
FIXTURE_PROMPT_IDS = [1, 293, 264, 271, 271, 274, 308, 274, 277, 271, 263, 47, 305, 267, 268, 278, 294, 278,
                      286, 305, 268, 273, 284, 287, 268, 279, 273, 264, 279, 305, 264, 278, 279]
FIXTURE_NAMES = ("bitnet-b158-tiny", "bitnet-gqa-tiny")

LLAMA3_HF_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "hello world, this is a tiny bitnet test",
    "The quick brown fox jumps over the lazy dog. It's 12345 o'clock, isn't it? We'll see!",
    "Ternary weights: -1, 0, +1; activations int8 (per token).   Spaces   and\ttabs\n\nnew lines\r\n",
    "Unicode: café naïve façade — “quotes” ‘single’ … 日本語のテキスト 中文文本 한국어 텍스트",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧 🇫🇷 and symbols ∑∫√∞ ≤≥ ©®™ €£¥",
    "def f(x):\n    return x ** 2  # code with    indentation\n",
    "I'M SHOUTING AND I'LL KEEP DOING IT, YOU'VE BEEN WARNED. They'd, we're, she's.",
    "numbers 3.14159 2.71828 1000000 007 42nd 1st 2nd",
] * 4


@pytest.fixture(scope="session")
def fixture_meta() -> Callable[[str], dict]:
    """GGUF metadata of a bitnet.cpp fixture (read with the project's GGUF reader)."""
    cache: dict[str, dict] = {}

    def get(name: str = "bitnet-b158-tiny") -> dict:
        if name not in cache:
            cache[name] = read_gguf(BITNETCPP_FIXTURES / f"{name}.i2_s.gguf").metadata
        return cache[name]

    return get


def make_spm_meta(pieces: list[tuple[str, float, int]], **extra) -> dict:
    """SPM metadata: <unk>, <s>, </s>, the 256 byte tokens, then `pieces` (text, score, type)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [2, 3, 3] + [6] * 256
    for text, score, ttype in pieces:
        tokens.append(text)
        scores.append(score)
        types.append(ttype)
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": True,
            "tokenizer.ggml.add_eos_token": False}
    meta.update(extra)
    return meta


@pytest.fixture(scope="session")
def spm_meta() -> Callable[..., dict]:
    return make_spm_meta


SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def train_byte_level_bpe(kind: str, vocab_size: int = 700) -> tokenizers.Tokenizer:
    """A byte-level BPE trained on CORPUS. kind "llama3": Llama 3's split regex + ByteLevel(use_regex=False)
    and ignore_merges; kind "gpt2": ByteLevel with GPT-2's built-in regex."""
    if kind == "llama3":
        tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_HF_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok = tokenizers.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def gguf_meta_from_hf(tok: tokenizers.Tokenizer, pre: str, **extra) -> dict:
    """The GGUF metadata llama.cpp's converter would write for a byte-level BPE tokenizer."""
    spec = json.loads(tok.to_str())
    n = tok.get_vocab_size(with_added_tokens=True)
    tokens = [tok.id_to_token(i) for i in range(n)]
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    types = [3 if t in special else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.bos_token_id": tokens.index("<|begin_of_text|>"),
            "tokenizer.ggml.eos_token_id": tokens.index("<|end_of_text|>")}
    meta.update(extra)
    return meta


@pytest.fixture(scope="session")
def hf_llama3() -> tokenizers.Tokenizer:
    return train_byte_level_bpe("llama3")


@pytest.fixture(scope="session")
def hf_gpt2() -> tokenizers.Tokenizer:
    return train_byte_level_bpe("gpt2")
