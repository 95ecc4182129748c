"""Reuse of a sequence's KV cache across generations that share a prefix (a chat's earlier turns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptCache:
    """A runtime sequence plus the token ids whose keys/values it holds, in order.

    Pass the same PromptCache to successive `generate` calls: each one evaluates only the part of its
    prompt after the longest prefix already cached. `tokens` always equals what the sequence holds, even
    when a generation is abandoned half way.
    """

    seq: Any = None
    tokens: list[int] = field(default_factory=list)

    def reuse(self, runtime: Any, ids: Sequence[int]) -> int:
        """Prepare the sequence for `ids`; return how many leading ids are already evaluated.

        At least the last id is always left to evaluate, since its logits are needed.
        """
        if self.seq is None:
            self.seq, self.tokens = runtime.new_sequence(), []
        limit = min(len(self.tokens), len(ids) - 1)
        n = 0
        while n < limit and self.tokens[n] == ids[n]:
            n += 1
        self.seq.truncate(n)
        del self.tokens[n:]
        return n
