"""Small stand-ins for the tokenizer, model and runtime, so engine tests script every token."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from tritium.core.model.config import ModelConfig
from tritium.core.tokenizer import Tokenizer

BOS, EOS = 256, 257
WORDS = ["hello", " world", "STO", "P", " é", "!"]  # ids 258.. (multi-byte pieces)
N_VOCAB = 258 + len(WORDS)


class FakeTokenizer(Tokenizer):
    """Byte-level vocabulary: ids 0..255 are bytes, 256 BOS, 257 EOS, then WORDS."""

    n_vocab = N_VOCAB
    bos_id = BOS
    eos_ids = (EOS,)
    add_bos = True
    add_eos = False
    chat_template = None

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        bos = self.add_bos if add_bos is None else add_bos
        return ([BOS] if bos else []) + list(text.encode("utf-8"))

    def token_bytes(self, token_id: int) -> bytes:
        if token_id < 256:
            return bytes([token_id])
        if token_id >= 258:
            return WORDS[token_id - 258].encode("utf-8")
        return self.token_text(token_id).encode()

    def is_special(self, token_id: int) -> bool:
        return token_id in (BOS, EOS)

    def token_text(self, token_id: int) -> str:
        return {BOS: "<s>", EOS: "</s>"}.get(token_id) or self.token_bytes(token_id).decode("latin-1")


def word(w: str) -> int:
    return 258 + WORDS.index(w)


class FakeSequence:
    def __init__(self) -> None:
        self.n_past = 0

    def truncate(self, n: int) -> None:
        assert 0 <= n <= self.n_past
        self.n_past = n


@dataclass
class ScriptedRuntime:
    """Each eval returns logits whose argmax is the next scripted token; records what it was fed."""

    script: list[int]
    n_vocab: int = N_VOCAB
    n_ctx: int = 64
    fed: list[list[int]] = field(default_factory=list)

    def new_sequence(self) -> FakeSequence:
        return FakeSequence()

    def eval(self, seq: FakeSequence, tokens: list[int], all_logits: bool = False) -> np.ndarray:
        assert tokens, "eval of no tokens"
        assert seq.n_past + len(tokens) <= self.n_ctx, "past the context"
        self.fed.append(list(tokens))
        seq.n_past += len(tokens)
        step = len(self.fed) - 1
        logits = np.zeros((1, self.n_vocab), np.float32)
        logits[0, self.script[min(step, len(self.script) - 1)]] = 10.0
        return logits


def fake_model(n_ctx: int = 64) -> SimpleNamespace:
    config = ModelConfig(arch="fake", n_vocab=N_VOCAB, n_embd=8, n_layer=1, n_head=1, n_head_kv=1, n_ff=8,
                         n_ctx=n_ctx, bos_token_id=BOS, eos_token_ids=(EOS,))
    return SimpleNamespace(config=config, weights=None, tokenizer=FakeTokenizer())
