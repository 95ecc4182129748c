"""Hugging Face tokenizers: tokenizer.json run by the `tokenizers` library, plus tokenizer_config.json.

Encoding is the library's. BOS/EOS handling is ours so that `add_bos` means the same thing for every
tokenizer: the text is encoded without the library's post-processor, then BOS (and EOS) are added as
tokenizer_config.json's `add_bos_token` / `add_eos_token` say; when those keys are absent, as the
post-processor would add them (detected by encoding the empty string).

Decoding works on per-token bytes, like the GGUF tokenizers, so that `StreamDecoder` applies. The bytes are
read from the decoder tokenizer.json declares:
  * ByteLevel (GPT-2 / Llama 3 style): the token spelled back from the byte alphabet;
  * SentencePiece style (Metaspace, or Replace "▁"→" " with ByteFallback): "▁" is a space, "<0xXX>" is a
    byte, and the space the normalizer prefixed is dropped after BOS (interface.py);
  * anything else: the library's decoding of the single token.
Added tokens are their own text. `is_special` is the added token's `special` flag.

End-of-generation ids: the eos token, plus generation_config.json's `eos_token_id` (an int or a list) when
the folder has one. The chat template comes, as transformers loads it, from chat_template.jinja, else
chat_template.json, else tokenizer_config.json's `chat_template` (a string, or a list of named templates:
"default" is used).
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

import tokenizers
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer.byte_level import chars_to_bytes
from tritium.core.tokenizer.gguf_tokenizer import parse_byte_token
from tritium.core.tokenizer.interface import Tokenizer


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{path}: cannot read JSON ({e})") from e


def _decoder_kind(decoder: dict | None) -> str:
    """"byte_level", "spm" or "other", from tokenizer.json's "decoder" section."""
    if not decoder:
        return "other"
    parts = decoder.get("decoders", []) if decoder.get("type") == "Sequence" else [decoder]
    types = {p.get("type") for p in parts}
    if "ByteLevel" in types:
        return "byte_level"
    if "Metaspace" in types or "ByteFallback" in types or any(
            p.get("type") == "Replace" and p.get("pattern", {}).get("String") == "\u2581" for p in parts):
        return "spm"
    return "other"


def _token_content(value: Any) -> str | None:
    """A special token entry of tokenizer_config.json: "<s>" or {"content": "<s>", ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(folder: Path, config: dict) -> str | None:
    # transformers lets a template file override tokenizer_config.json's field: .jinja, then .json.
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8") or None
    as_json = folder / "chat_template.json"
    if as_json.is_file():
        template = _read_json(as_json).get("chat_template")
        if isinstance(template, str) and template:
            return template
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) and template else None


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` behind the Tokenizer interface (see module doc)."""

    def __init__(self, tokenizer_json: str, config: dict | None = None, chat_template: str | None = None,
                 generation_config: dict | None = None, source: str = "tokenizer.json") -> None:
        config = config or {}
        try:
            self._tok = tokenizers.Tokenizer.from_str(tokenizer_json)
            # A second instance that encodes special tokens' spellings as plain text (parse_special=False);
            # toggling the flag on one shared instance would race between threads.
            self._tok_plain = tokenizers.Tokenizer.from_str(tokenizer_json)
        except Exception as e:   # the library raises plain Exception subclasses for malformed files
            raise TokenizerError(f"{source}: cannot load ({e})") from e
        self._tok_plain.encode_special_tokens = True
        spec = json.loads(tokenizer_json)
        self._kind = _decoder_kind(spec.get("decoder"))
        self.strips_space_after_bos = self._kind == "spm"
        self.n_vocab = self._tok.get_vocab_size(with_added_tokens=True)
        self._added = dict(self._tok.get_added_tokens_decoder())
        self.chat_template = chat_template

        self.bos_id = self._special_id(config, "bos_token", source)
        eos_id = self._special_id(config, "eos_token", source)
        eos = [eos_id] if eos_id is not None else []
        gen_eos = (generation_config or {}).get("eos_token_id")
        for extra in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if isinstance(extra, int) and 0 <= extra < self.n_vocab and extra not in eos:
                eos.append(extra)
        self.eos_ids = tuple(eos)
        self._eos_id = eos_id

        # What the post-processor adds around an empty text, for when tokenizer_config.json does not say.
        with_specials = self._tok.encode("", add_special_tokens=True).ids
        add_bos, add_eos = config.get("add_bos_token"), config.get("add_eos_token")
        self.add_bos = add_bos if isinstance(add_bos, bool) else \
            self.bos_id is not None and with_specials[:1] == [self.bos_id]
        self.add_eos = add_eos if isinstance(add_eos, bool) else \
            eos_id is not None and with_specials[-1:] == [eos_id] and with_specials != [self.bos_id]
        if self.add_bos and self.bos_id is None:
            raise TokenizerError(f"{source}: add_bos_token is true but no bos_token is defined")
        self._pieces: dict[int, bytes] = {}

    def _special_id(self, config: dict, key: str, source: str) -> int | None:
        content = _token_content(config.get(key))
        if content is None:
            return None
        tid = self._tok.token_to_id(content)
        if tid is None:
            raise TokenizerError(f"{source}: tokenizer_config.json {key} {content!r} is not in the "
                                 "vocabulary")
        return tid

    @classmethod
    def from_folder(cls, path: str | PathLike[str]) -> HFTokenizer:
        """Load tokenizer.json (+ tokenizer_config.json, generation_config.json, chat template files)."""
        folder = Path(path)
        tj = folder / "tokenizer.json"
        if not tj.is_file():
            raise TokenizerError(f"{folder}: no tokenizer.json (needed for a Hugging Face model folder)")
        cfg_path = folder / "tokenizer_config.json"
        config = _read_json(cfg_path) if cfg_path.is_file() else {}
        gen_path = folder / "generation_config.json"
        gen = _read_json(gen_path) if gen_path.is_file() else None
        return cls(tj.read_text(encoding="utf-8"), config, _chat_template(folder, config), gen, str(tj))

    # ---- Tokenizer interface -------------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TokenizerError(f"encode: expected text (str), found {type(text).__name__}")
        tok = self._tok if parse_special else self._tok_plain
        try:
            ids = tok.encode(text, add_special_tokens=False).ids
        except Exception as e:
            raise TokenizerError(f"encode: the tokenizers library failed ({e})") from e
        want_bos = self.add_bos if add_bos is None else bool(add_bos)
        if want_bos:
            if self.bos_id is None:
                raise TokenizerError("encode: add_bos requested but the tokenizer has no bos_token")
            ids = [self.bos_id, *ids]
        if add_bos is not False and self.add_eos:
            ids.append(self._eos_id)
        return ids

    def token_text(self, token_id: int) -> str:
        tid = self.check_id(token_id)
        added = self._added.get(tid)
        if added is not None:
            return added.content
        text = self._tok.id_to_token(tid)
        if text is None:
            raise TokenizerError(f"token id {tid} has no spelling in tokenizer.json")
        return text

    def token_bytes(self, token_id: int) -> bytes:
        tid = self.check_id(token_id)
        piece = self._pieces.get(tid)
        if piece is None:
            piece = self._compute_piece(tid)
            self._pieces[tid] = piece
        return piece

    def _compute_piece(self, tid: int) -> bytes:
        added = self._added.get(tid)
        if added is not None:
            return added.content.encode("utf-8")
        text = self.token_text(tid)
        if self._kind == "byte_level":
            return chars_to_bytes(text)
        if self._kind == "spm":
            value = parse_byte_token(text)
            if value is not None:
                return bytes([value])
            return text.replace("\u2581", " ").encode("utf-8")
        return self._tok.decode([tid], skip_special_tokens=False).encode("utf-8")

    def is_special(self, token_id: int) -> bool:
        added = self._added.get(self.check_id(token_id))
        return bool(added is not None and added.special)
