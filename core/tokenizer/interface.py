"""The `Tokenizer` contract every tokenizer (GGUF SPM, GGUF BPE, Hugging Face tokenizer.json) fulfils.

Decoding is defined on bytes: each token has a piece (`token_bytes`), the text of a sequence is the
concatenation of its pieces decoded as UTF-8 (invalid bytes become U+FFFD). That definition is what makes
`StreamDecoder` exact: it decodes the same byte string incrementally.

One rule deals with the space SentencePiece vocabularies add in front of the text ("hello" is encoded as
"▁hello"): when a sequence starts with BOS, the one leading space of the piece right after BOS is the one
the encoder added, and `decode` drops it, so `decode(encode(text)) == text`. A sequence that does not start
with BOS keeps every space: the first generated token `▁w78` decodes to " w78", which is what llama-cli
prints after a prompt. `strip_leading_space=` overrides the rule in either direction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tritium.core.errors import TokenizerError
from tritium.core.tokenizer.chat_template import FALLBACK_CHAT_TEMPLATE, render_chat


class Tokenizer(ABC):
    """A vocabulary with encode/decode, special-token ids and a chat template.

    Attributes every implementation sets in its constructor:
      n_vocab: number of token ids (0..n_vocab-1).
      bos_id: the begin-of-sequence id, or None when the vocabulary has none.
      eos_ids: every id that ends generation (eos, and eot/eom when the metadata has them).
      add_bos / add_eos: whether `encode` adds BOS / EOS by default, as the model's metadata says.
      chat_template: the model's Jinja chat template, or None.
      strips_space_after_bos: True for SentencePiece-style vocabularies whose encoder prefixes a space.
    """

    n_vocab: int
    bos_id: int | None
    eos_ids: tuple[int, ...]
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    strips_space_after_bos: bool = False

    # ---- what an implementation provides -------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        """Token ids of `text`. add_bos None means the model's default (`self.add_bos`); EOS is appended
        when the model says so (`self.add_eos`) and BOS is being added. parse_special=True turns the text
        of control tokens (e.g. "<|eot_id|>") into their ids; otherwise they are encoded as plain text."""

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes token `token_id` stands for (a byte-fallback token is one byte; a special token is
        its text). Raises TokenizerError for an id outside 0..n_vocab-1."""

    @abstractmethod
    def is_special(self, token_id: int) -> bool:
        """True for control/unknown tokens, which `decode(skip_special=True)` leaves out."""

    @abstractmethod
    def token_text(self, token_id: int) -> str:
        """The vocabulary's own spelling of the token (e.g. "▁hello", "<0x2C>", "Ġworld")."""

    # ---- shared behaviour ----------------------------------------------------------------------------
    def check_id(self, token_id: int) -> int:
        """`token_id` as an int, or TokenizerError when it is outside the vocabulary."""
        tid = int(token_id)
        if not 0 <= tid < self.n_vocab:
            raise TokenizerError(f"token id {tid} is outside the vocabulary (0..{self.n_vocab - 1})")
        return tid

    def piece(self, token_id: int, skip_special: bool = True) -> bytes:
        """The bytes `token_id` contributes to decoded text: empty for a special token when skip_special."""
        tid = self.check_id(token_id)
        if skip_special and self.is_special(tid):
            return b""
        return self.token_bytes(tid)

    def strip_target(self, ids: Sequence[int], strip_leading_space: bool | None) -> int:
        """Index of the token whose one leading space `decode` drops, or -1 for none (see module doc)."""
        starts_with_bos = len(ids) > 0 and self.bos_id is not None and int(ids[0]) == self.bos_id
        strip = self.strips_space_after_bos and starts_with_bos if strip_leading_space is None \
            else strip_leading_space
        if not strip:
            return -1
        return 1 if starts_with_bos else 0

    def decode(self, ids: Iterable[int], skip_special: bool = True,
               strip_leading_space: bool | None = None) -> str:
        """Text of `ids`: the pieces' bytes concatenated and decoded as UTF-8 (invalid bytes → U+FFFD).

        The leading space after BOS is dropped for SentencePiece vocabularies (see module doc), so
        `decode(encode(text)) == text`; `strip_leading_space` forces the strip on or off."""
        ids = [int(i) for i in ids]
        target = self.strip_target(ids, strip_leading_space)
        out = bytearray()
        for k, tid in enumerate(ids):
            piece = self.piece(tid, skip_special)
            if k == target and piece.startswith(b" "):
                piece = piece[1:]
            out += piece
        return out.decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                            **extra: Any) -> str:
        """The conversation rendered with the model's chat template (or FALLBACK_CHAT_TEMPLATE when the
        model has none), as transformers renders it. Template errors raise TokenizerError."""
        template = self.chat_template if self.chat_template else FALLBACK_CHAT_TEMPLATE
        return render_chat(template, messages, bos_token=self.special_text(self.bos_id),
                           eos_token=self.special_text(self.eos_ids[0] if self.eos_ids else None),
                           add_generation_prompt=add_generation_prompt, **extra)

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                    **extra: Any) -> list[int]:
        """Token ids of a rendered conversation: control tokens in the template are parsed, and BOS is
        added only when the model adds it and the template did not already write it (no double BOS)."""
        text = self.apply_chat_template(messages, add_generation_prompt, **extra)
        bos_text = self.special_text(self.bos_id)
        add_bos = self.add_bos and not (bos_text and text.startswith(bos_text))
        return self.encode(text, add_bos=add_bos, parse_special=True)

    def special_text(self, token_id: int | None) -> str:
        """The spelling of a special token as templates write it ("<s>", "<|begin_of_text|>"), or ""."""
        if token_id is None:
            return ""
        return self.token_text(token_id)
