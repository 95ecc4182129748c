"""Incremental detokenization: token ids in, text deltas out, never half a character.

A byte-fallback vocabulary spells "é" as two tokens <0xC3><0xA9>, and a byte-level BPE vocabulary may split
an emoji's four bytes over several tokens. `StreamDecoder` keeps the bytes of an incomplete UTF-8 sequence
until the rest arrives, so every delta is whole characters. The concatenation of all deltas plus `flush()`
equals `tokenizer.decode(all ids)` with the same options (same pieces, same leading-space rule, the same
U+FFFD for bytes that never form a character).
"""

from __future__ import annotations

import codecs

from tritium.core.tokenizer.interface import Tokenizer


class StreamDecoder:
    """Feed ids one at a time with `feed`; each call returns the newly completed text (maybe "")."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True,
                 strip_leading_space: bool | None = None) -> None:
        self.tokenizer = tokenizer
        self.skip_special = skip_special
        self.strip_leading_space = strip_leading_space
        # Python's incremental UTF-8 decoder holds back an incomplete trailing sequence and, with
        # errors="replace", produces exactly what a one-shot bytes.decode(errors="replace") would.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._count = 0
        self._target = -1

    def feed(self, token_id: int) -> str:
        """Text completed by `token_id` (whole characters only)."""
        tok = self.tokenizer
        tid = tok.check_id(token_id)
        if self._count == 0:
            # decode()'s rule: the first id decides which token (if any) loses its leading space.
            self._target = tok.strip_target([tid], self.strip_leading_space)
        piece = tok.piece(tid, self.skip_special)
        if self._count == self._target and piece.startswith(b" "):
            piece = piece[1:]
        self._count += 1
        return self._utf8.decode(piece)

    def feed_many(self, ids: list[int]) -> str:
        """Text completed by several ids."""
        return "".join(self.feed(i) for i in ids)

    def pending_bytes(self) -> bytes:
        """Bytes held back because they do not yet form a whole character."""
        return self._utf8.getstate()[0]

    def flush(self) -> str:
        """What is left at the end of the stream: held-back bytes become U+FFFD. Resets the decoder."""
        tail = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        self._count = 0
        self._target = -1
        return tail
