"""llama.cpp's SentencePiece (`tokenizer.ggml.model == "llama"`) tokenizer, reproduced id for id.

Per text fragment (llama.cpp `llm_tokenizer_spm_session`):
  1. a space is prefixed when `add_space_prefix` is set and the fragment starts the text or follows a
     special token; then every " " becomes "▁" (U+2581);
  2. the fragment is cut into one symbol per UTF-8 character;
  3. every adjacent pair whose concatenation is a vocabulary piece is a candidate, ranked by that piece's
     score (highest first; equal scores: leftmost first). The best candidate is merged, its neighbours
     become new candidates, stale candidates (a side already merged away or grown) are skipped;
  4. each final symbol becomes its piece's id, or, when the symbol is not a piece, one `<0xXX>` byte token
     per UTF-8 byte (the byte fallback).
llama.cpp also keeps a `rev_merge` table to re-split unknown merged symbols; a merge only happens when the
merged text is a piece, so a final symbol is either a piece or a single character and that table is never
consulted. The byte fallback is therefore the whole of `resegment`.

As in SentencePiece itself, a literal "▁" in the input is indistinguishable from a space once escaped, so
it decodes as " "; every other text round-trips exactly.
"""

from __future__ import annotations

import heapq

from tritium.core.errors import TokenizerError
from tritium.core.tokenizer.gguf_tokenizer import GGUFTokenizer
from tritium.core.tokenizer.gguf_vocab import GGUFVocab

SPACE_MARK = "\u2581"   # "▁", SentencePiece's visible space


class SPMTokenizer(GGUFTokenizer):
    """A GGUF SentencePiece vocabulary (scores + byte-fallback tokens)."""

    def __init__(self, vocab: GGUFVocab) -> None:
        super().__init__(vocab)
        self.add_space_prefix = vocab.add_space_prefix
        self.strips_space_after_bos = vocab.add_space_prefix
        self._byte_ids: list[int | None] = [self._byte_to_token(b) for b in range(256)]

    def _byte_to_token(self, b: int) -> int | None:
        # llama.cpp byte_to_token: "<0xXX>", else the byte itself as a one-character piece.
        tid = self.vocab.token_to_id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = self.vocab.token_to_id.get(chr(b))
        return tid

    def encode_fragment(self, text: str, after_special: bool, out: list[int]) -> None:
        if self.add_space_prefix and after_special:
            text = " " + text
        text = text.replace(" ", SPACE_MARK)
        self._tokenize(text, out)

    def _tokenize(self, text: str, out: list[int]) -> None:
        pieces = self.vocab.token_to_id
        scores = self.vocab.scores
        n = len(text)
        if n == 0:
            return
        # Symbol i spans text[start[i]:start[i] + length[i]]; length 0 means merged into its left neighbour.
        start = list(range(n))
        length = [1] * n
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        queue: list[tuple[float, int, int, int]] = []   # (-score, left, right, merged length)

        def try_add(left: int, right: int) -> None:
            if left == -1 or right == -1:
                return
            merged = text[start[left]:start[left] + length[left] + length[right]]
            tid = pieces.get(merged)
            if tid is None:
                return
            # std::priority_queue with comparator (score <, then left >): highest score, then leftmost.
            heapq.heappush(queue, (-scores[tid], left, right, len(merged)))

        for i in range(1, n):
            try_add(i - 1, i)
        while queue:
            _, left, right, size = heapq.heappop(queue)
            if length[left] == 0 or length[right] == 0 or length[left] + length[right] != size:
                continue
            length[left] += length[right]
            length[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            try_add(prev[left], left)
            try_add(left, nxt[left])

        i = 0
        while i != -1:
            symbol = text[start[i]:start[i] + length[i]]
            tid = pieces.get(symbol)
            if tid is not None:
                out.append(tid)
            else:
                for b in symbol.encode("utf-8"):
                    out.append(self._byte_token(b, symbol))
            i = nxt[i]

    def _byte_token(self, b: int, symbol: str) -> int:
        tid = self._byte_ids[b]
        if tid is not None:
            return tid
        # llama.cpp throws here (token_to_id.at); a vocabulary without byte tokens maps to <unk> instead.
        if self.unk_id is not None:
            return self.unk_id
        raise TokenizerError(f"cannot encode {symbol!r}: the vocabulary has neither the byte token "
                             f"<0x{b:02X}> nor an unknown token")

    def normal_piece(self, text: str) -> bytes:
        return text.replace(SPACE_MARK, " ").encode("utf-8")
