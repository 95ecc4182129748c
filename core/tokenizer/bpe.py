"""llama.cpp's byte-level BPE tokenizer (`tokenizer.ggml.model == "gpt2"`), e.g. Llama 3's vocabulary.

Per text fragment (llama.cpp `llm_tokenizer_bpe_session`):
  1. the pre-tokenizer named by `tokenizer.ggml.pre` splits it into words (bpe_pretokenizer.py);
  2. each word's UTF-8 bytes are spelled in GPT-2's byte alphabet (byte_level.py);
  3. llama3-family vocabularies ("ignore_merges") take a word that is itself a token as one token;
  4. otherwise the word starts as one symbol per character; every adjacent pair listed in
     `tokenizer.ggml.merges` is a candidate ranked by its line number (lowest first; ties: leftmost);
     the best is merged, stale candidates (whose sides changed) are skipped;
  5. each final symbol is its token; a symbol that is not a token falls back to one token per byte where
     the vocabulary has one (a complete byte-level vocabulary always has).
Decoding spells NORMAL tokens back from the byte alphabet. Unlike llama.cpp's `detokenize`, no
"clean_up_tokenization_spaces" pass is applied: decode is the exact concatenation of the pieces, as
llama.cpp streams them, so text round-trips exactly.
"""

from __future__ import annotations

import heapq

from tritium.core.errors import TokenizerError
from tritium.core.tokenizer.bpe_pretokenizer import pre_tokenizer_for
from tritium.core.tokenizer.byte_level import bytes_to_chars, chars_to_bytes
from tritium.core.tokenizer.gguf_tokenizer import GGUFTokenizer
from tritium.core.tokenizer.gguf_vocab import LLAMA3_PRE, GGUFVocab

_WORD_CACHE_SIZE = 65536


def parse_merges(merges: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """Merge rank of each (left, right) pair. A line is "left right", split at the first space after its
    first character (as llama.cpp); the first occurrence of a pair wins."""
    ranks: dict[tuple[str, str], int] = {}
    for rank, line in enumerate(merges):
        pos = line.find(" ", 1)
        if pos < 0:
            raise TokenizerError(f"tokenizer.ggml.merges[{rank}] = {line!r}: expected 'left right'")
        ranks.setdefault((line[:pos], line[pos + 1:]), rank)
    return ranks


class BPETokenizer(GGUFTokenizer):
    """A GGUF byte-level BPE vocabulary (tokens + merges + pre-tokenizer name)."""

    def __init__(self, vocab: GGUFVocab) -> None:
        super().__init__(vocab)
        self.pre_tokenizer = pre_tokenizer_for(vocab.pre)
        self.ranks = parse_merges(vocab.merges)
        self.ignore_merges = vocab.pre in LLAMA3_PRE
        self.strips_space_after_bos = False
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode_fragment(self, text: str, after_special: bool, out: list[int]) -> None:
        for word in self.pre_tokenizer.split(text):
            ids = self._cache.get(word)
            if ids is None:
                ids = self._encode_word(bytes_to_chars(word.encode("utf-8")))
                if len(self._cache) >= _WORD_CACHE_SIZE:
                    self._cache.clear()
                self._cache[word] = ids
            out.extend(ids)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        pieces = self.vocab.token_to_id
        if self.ignore_merges and word in pieces:
            return (pieces[word],)
        n = len(word)
        start = list(range(n))
        length = [1] * n
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        queue: list[tuple[int, int, int, str]] = []     # (rank, left, right, merged text)

        def sym(i: int) -> str:
            return word[start[i]:start[i] + length[i]]

        def try_add(left: int, right: int) -> None:
            if left == -1 or right == -1:
                return
            a, b = sym(left), sym(right)
            rank = self.ranks.get((a, b))
            if rank is not None:
                heapq.heappush(queue, (rank, left, right, a + b))

        for i in range(1, n):
            try_add(i - 1, i)
        while queue:
            _, left, right, merged = heapq.heappop(queue)
            if length[left] == 0 or length[right] == 0 or sym(left) + sym(right) != merged:
                continue
            length[left] += length[right]
            length[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            try_add(prev[left], left)
            try_add(left, nxt[left])

        ids: list[int] = []
        i = 0
        while i != -1:
            s = sym(i)
            tid = pieces.get(s)
            if tid is not None:
                ids.append(tid)
            else:
                # llama.cpp looks each UTF-8 byte of the symbol up as a one-byte string; only ASCII can match.
                for b in s.encode("utf-8"):
                    if b < 0x80 and chr(b) in pieces:
                        ids.append(pieces[chr(b)])
            i = nxt[i]
        return tuple(ids)

    def normal_piece(self, text: str) -> bytes:
        return chars_to_bytes(text)
