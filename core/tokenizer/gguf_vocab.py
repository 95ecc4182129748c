"""The vocabulary a GGUF file describes in its `tokenizer.ggml.*` metadata, checked and normalised.

Defaults follow llama.cpp's `llama_vocab::load`:
  * SPM ("llama"): bos 1, eos 2, unk 0 when the ids are absent; add_bos true, add_eos false,
    add_space_prefix true (`tokenizer.ggml.add_space_prefix` overrides it).
  * BPE ("gpt2"): no default ids (llama.cpp's default 11 is a GPT-NeoX leftover); add_bos false except for
    the llama3-family pre-tokenizers, add_eos false, never a space prefix.
  * `tokenizer.ggml.add_bos_token` / `add_eos_token` override add_bos / add_eos.
End-of-generation ids: eos, eot and eom (from their `*_token_id` keys, or found by their spelling as
llama.cpp does, e.g. "<|eot_id|>", "<|im_end|>"), plus the other end-of-turn spellings llama.cpp knows.
Tokens that end generation are treated as CONTROL even when the file typed them otherwise (as llama.cpp).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from tritium.core.errors import TokenizerError

KEY = "tokenizer.ggml."


class TokenType(IntEnum):
    """`tokenizer.ggml.token_type` values (llama.cpp's llama_token_type)."""

    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# Spellings llama.cpp recognises (llama-vocab.cpp, "auto-detect special tokens by text").
EOT_SPELLINGS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                 "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
EOM_SPELLINGS = ("<|eom_id|>",)
EOG_SPELLINGS = frozenset(EOT_SPELLINGS + EOM_SPELLINGS + ("<|return|>", "<|call|>", "<eos>"))

# Pre-tokenizer names (tokenizer.ggml.pre) of the llama3 family: llama.cpp sets ignore_merges and add_bos.
LLAMA3_PRE = frozenset({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                        "lfm2"})


@dataclass(frozen=True)
class GGUFVocab:
    """Everything a GGUF tokenizer needs, validated. `types` are TokenType values after llama.cpp's fixes."""

    model: str                      # "llama" (SPM) or "gpt2" (byte-level BPE)
    pre: str                        # tokenizer.ggml.pre ("" when absent)
    tokens: tuple[str, ...]
    scores: tuple[float, ...]
    types: tuple[int, ...]
    token_to_id: Mapping[str, int]
    merges: tuple[str, ...]         # empty for SPM
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    eom_id: int | None
    unk_id: int | None
    eog_ids: tuple[int, ...]        # eos first, then eot, eom and the rest in id order
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)


def _as_str(value: Any, key: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{key}: not valid UTF-8 ({e})") from e
    if not isinstance(value, str):
        raise TokenizerError(f"{key}: expected a string, found {type(value).__name__}")
    return value


def _as_list(value: Any, key: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TokenizerError(f"{key}: expected an array, found {type(value).__name__}")
    return list(value)


def _as_str_list(value: Any, key: str) -> list[str]:
    items = _as_list(value, key)
    if all(type(t) is str for t in items):     # the common case: no per-item call on 128k-token lists
        return items
    return [_as_str(t, key) for t in items]


def _as_bool(meta: Mapping[str, Any], key: str, default: bool) -> bool:
    if key not in meta:
        return default
    value = meta[key]
    if hasattr(value, "item"):          # numpy scalar
        value = value.item()
    if not isinstance(value, (bool, int)):
        raise TokenizerError(f"{key}: expected a bool, found {value!r}")
    return bool(value)


def _token_id(meta: Mapping[str, Any], key: str, n_vocab: int, default: int | None) -> int | None:
    if key not in meta:
        return default if default is not None and default < n_vocab else None
    value = meta[key]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenizerError(f"{key}: expected an integer token id, found {value!r}")
    if not 0 <= value < n_vocab:
        raise TokenizerError(f"{key}: token id {value} is outside the vocabulary (0..{n_vocab - 1})")
    return value


def _find_spelling(tokens: Sequence[str], spellings: Sequence[str]) -> int | None:
    wanted = set(spellings)
    for i, t in enumerate(tokens):
        if t in wanted:
            return i
    return None


def parse_gguf_vocab(meta: Mapping[str, Any]) -> GGUFVocab:
    """Validate the `tokenizer.ggml.*` keys of a GGUF metadata dict and apply llama.cpp's defaults.

    Raises TokenizerError naming the key when a required key is missing, an array has the wrong length
    or type, an id is out of range, a token is duplicated, or the tokenizer model is not supported."""
    key = KEY + "model"
    if key not in meta:
        raise TokenizerError(f"{key}: missing (the file has no tokenizer metadata)")
    model = _as_str(meta[key], key)
    if model not in ("llama", "gpt2"):
        raise TokenizerError(f"{key}: unsupported tokenizer model {model!r} (supported: 'llama' = "
                             "SentencePiece, 'gpt2' = byte-level BPE)")
    pre = _as_str(meta.get(KEY + "pre", ""), KEY + "pre")

    key = KEY + "tokens"
    if key not in meta:
        raise TokenizerError(f"{key}: missing (the vocabulary's token list is required)")
    tokens = _as_str_list(meta[key], key)
    n = len(tokens)
    if n == 0:
        raise TokenizerError(f"{key}: the token list is empty")
    # llama.cpp renames empty pieces so they can never match text.
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    token_to_id: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t in token_to_id:
            raise TokenizerError(f"{key}: duplicate token {t!r} at ids {token_to_id[t]} and {i}")
        token_to_id[t] = i

    key = KEY + "scores"
    if key in meta:
        raw_scores = _as_list(meta[key], key)
        if len(raw_scores) != n:
            raise TokenizerError(f"{key}: has {len(raw_scores)} entries, expected one per token ({n})")
        try:
            scores = [float(s) for s in raw_scores]
        except (TypeError, ValueError) as e:
            raise TokenizerError(f"{key}: expected numbers ({e})") from e
    elif model == "llama":
        raise TokenizerError(f"{key}: missing (a SentencePiece vocabulary merges by score)")
    else:
        scores = [0.0] * n

    key = KEY + "token_type"
    if key in meta:
        raw_types = _as_list(meta[key], key)
        if len(raw_types) != n:
            raise TokenizerError(f"{key}: has {len(raw_types)} entries, expected one per token ({n})")
        try:
            types = [int(t) for t in raw_types]
        except (TypeError, ValueError) as e:
            raise TokenizerError(f"{key}: expected integers ({e})") from e
        types = [t if 0 <= t <= 6 else int(TokenType.UNDEFINED) for t in types]
    else:
        types = [int(TokenType.NORMAL)] * n

    merges: tuple[str, ...] = ()
    if model == "gpt2":
        key = KEY + "merges"
        if key not in meta:
            raise TokenizerError(f"{key}: missing (a byte-level BPE vocabulary needs its merge list)")
        merges = tuple(_as_str_list(meta[key], key))

    spm = model == "llama"
    bos_id = _token_id(meta, KEY + "bos_token_id", n, 1 if spm else None)
    eos_id = _token_id(meta, KEY + "eos_token_id", n, 2 if spm else None)
    unk_id = _token_id(meta, KEY + "unknown_token_id", n, 0 if spm else None)
    eot_id = _token_id(meta, KEY + "eot_token_id", n, None)
    eom_id = _token_id(meta, KEY + "eom_token_id", n, None)
    if eot_id is None:
        eot_id = _find_spelling(tokens, EOT_SPELLINGS)
    if eom_id is None:
        eom_id = _find_spelling(tokens, EOM_SPELLINGS)

    add_bos = _as_bool(meta, KEY + "add_bos_token", spm or pre in LLAMA3_PRE)
    add_eos = _as_bool(meta, KEY + "add_eos_token", False)
    add_space_prefix = spm and _as_bool(meta, KEY + "add_space_prefix", True)
    if add_bos and bos_id is None:
        raise TokenizerError(f"{KEY}add_bos_token is true, but {KEY}bos_token_id is not set")
    if add_eos and eos_id is None:
        raise TokenizerError(f"{KEY}add_eos_token is true, but {KEY}eos_token_id is not set")

    eog = [i for i in (eos_id, eot_id, eom_id) if i is not None]
    eog += [i for i, t in enumerate(tokens) if t in EOG_SPELLINGS and i not in eog]
    eog_ids = tuple(dict.fromkeys(eog))
    for i in (*eog_ids, *(x for x in (eot_id, eom_id) if x is not None)):
        if types[i] in (TokenType.NORMAL, TokenType.UNDEFINED, TokenType.USER_DEFINED):
            types[i] = int(TokenType.CONTROL)   # llama.cpp: "control-looking token ... type overridden"

    chat_template = meta.get("tokenizer.chat_template")
    if chat_template is not None:
        chat_template = _as_str(chat_template, "tokenizer.chat_template") or None

    return GGUFVocab(model=model, pre=pre, tokens=tuple(tokens), scores=tuple(scores), types=tuple(types),
                     token_to_id=token_to_id, merges=merges, bos_id=bos_id, eos_id=eos_id, eot_id=eot_id,
                     eom_id=eom_id, unk_id=unk_id, eog_ids=eog_ids, add_bos=add_bos, add_eos=add_eos,
                     add_space_prefix=add_space_prefix, chat_template=chat_template)
