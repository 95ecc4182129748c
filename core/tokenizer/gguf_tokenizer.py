"""What the GGUF tokenizers (SPM and BPE) share: special-token partitioning, BOS/EOS, pieces.

Encoding follows llama.cpp's `llama_vocab::impl::tokenize`: the text is first cut at every occurrence of a
special token's spelling (longest spellings first). USER_DEFINED tokens are always cut out; CONTROL and
UNKNOWN ones only when parse_special=True. Each remaining text fragment is handed to the subclass's
`encode_fragment`, which learns whether a special token (or the start of the text) precedes it, since
SentencePiece prefixes a space exactly there.

Pieces follow llama.cpp's `token_to_piece`: NORMAL tokens are the subclass's decoding of their spelling,
BYTE tokens `<0xXX>` are one raw byte, CONTROL/UNKNOWN/USER_DEFINED tokens are their spelling (CONTROL and
UNKNOWN are left out when skip_special), UNUSED and UNDEFINED tokens decode to nothing.
"""

from __future__ import annotations

from abc import abstractmethod

from tritium.core.errors import TokenizerError
from tritium.core.tokenizer.gguf_vocab import GGUFVocab, TokenType
from tritium.core.tokenizer.interface import Tokenizer

_PARTITION_TYPES = (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN)


def parse_byte_token(text: str) -> int | None:
    """The byte value of a "<0xXX>" spelling, or None."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None


class GGUFTokenizer(Tokenizer):
    """Base of SPMTokenizer and BPETokenizer; holds the validated GGUFVocab."""

    def __init__(self, vocab: GGUFVocab) -> None:
        self.vocab = vocab
        self.n_vocab = vocab.n_vocab
        self.bos_id = vocab.bos_id
        self.eos_ids = vocab.eog_ids
        self.add_bos = vocab.add_bos
        self.add_eos = vocab.add_eos
        self.chat_template = vocab.chat_template
        self.unk_id = vocab.unk_id
        specials = [i for i, t in enumerate(vocab.types) if t in _PARTITION_TYPES]
        # Longest spelling first, as llama.cpp's cache_special_tokens (ties by id, for determinism).
        specials.sort(key=lambda i: (-len(vocab.tokens[i].encode("utf-8")), i))
        self._specials_all = [(vocab.tokens[i], i) for i in specials]
        self._specials_user = [(t, i) for t, i in self._specials_all
                               if vocab.types[i] == TokenType.USER_DEFINED]
        self._pieces: list[bytes | None] = [None] * self.n_vocab

    # ---- encoding ------------------------------------------------------------------------------------
    @abstractmethod
    def encode_fragment(self, text: str, after_special: bool, out: list[int]) -> None:
        """Append the ids of one fragment of plain text (no special tokens in it) to `out`."""

    def partition(self, text: str, parse_special: bool) -> list[str | int]:
        """`text` cut into plain-text fragments (str) and special token ids (int), in order."""
        fragments: list[str | int] = [text] if text else []
        for spelling, tid in (self._specials_all if parse_special else self._specials_user):
            cut: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or spelling not in frag:
                    cut.append(frag)
                    continue
                for k, part in enumerate(frag.split(spelling)):
                    if k:
                        cut.append(tid)
                    if part:
                        cut.append(part)
            fragments = cut
        return fragments

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        """Token ids of `text`, exactly as llama.cpp's llama_tokenize(text, add_special, parse_special).

        add_bos None: BOS and EOS as the model's add_bos/add_eos say (llama.cpp's add_special=true);
        False: neither; True: BOS even if the model does not add it, EOS as the model says."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode: expected text (str), found {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TokenizerError(f"encode: text is not encodable as UTF-8 ({e.reason} at {e.start})") from e
        want_bos = self.add_bos if add_bos is None else bool(add_bos)
        out: list[int] = []
        if want_bos:
            if self.bos_id is None:
                raise TokenizerError("encode: add_bos requested but the vocabulary has no "
                                     "tokenizer.ggml.bos_token_id")
            out.append(self.bos_id)
        after_special = True            # the start of the text counts as "after a special token"
        for frag in self.partition(text, parse_special):
            if isinstance(frag, int):
                out.append(frag)
                after_special = True
            else:
                self.encode_fragment(frag, after_special, out)
                after_special = False
        if add_bos is not False and self.add_eos:
            out.append(self.vocab.eos_id)
        return out

    # ---- decoding ------------------------------------------------------------------------------------
    @abstractmethod
    def normal_piece(self, text: str) -> bytes:
        """The bytes a NORMAL token with spelling `text` stands for."""

    def token_bytes(self, token_id: int) -> bytes:
        tid = self.check_id(token_id)
        piece = self._pieces[tid]
        if piece is None:
            piece = self._compute_piece(tid)
            self._pieces[tid] = piece
        return piece

    def _compute_piece(self, tid: int) -> bytes:
        text = self.vocab.tokens[tid]
        ttype = self.vocab.types[tid]
        if ttype in _PARTITION_TYPES:
            return text.encode("utf-8")
        if ttype == TokenType.NORMAL:
            return self.normal_piece(text)
        if ttype == TokenType.BYTE:
            value = parse_byte_token(text)
            if value is None:
                raise TokenizerError(f"tokenizer.ggml.tokens[{tid}] = {text!r} is typed BYTE but is not "
                                     "spelled <0xXX>")
            return bytes([value])
        return b""                      # UNUSED / UNDEFINED: llama.cpp prints nothing

    def is_special(self, token_id: int) -> bool:
        return self.vocab.types[self.check_id(token_id)] in (TokenType.CONTROL, TokenType.UNKNOWN)

    def token_text(self, token_id: int) -> str:
        return self.vocab.tokens[self.check_id(token_id)]

    def token_type(self, token_id: int) -> TokenType:
        return TokenType(self.vocab.types[self.check_id(token_id)])
