"""A batch runtime whose logits are a pure function of each sequence's tokens, for engine tests.

`FakeBatchRuntime.step` records every call (which sequences, which tokens), so tests can see batches
form, chunks split and KV caches freed. The next token after a prefix is `rule(prefix)`; the default
rule spells lowercase letters derived from the prefix, so text is plain ASCII and differs per prompt.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tritium.core.sampling.sampler import Sampler

from tests.engine.fakes import EOS, N_VOCAB, fake_model  # noqa: F401  (re-exported for the tests)


def letters_rule(prefix: list[int]) -> int:
    """A deterministic lowercase letter that depends on the whole prefix."""
    return ord("a") + zlib.crc32(np.asarray(prefix, np.int64).tobytes()) % 26


@dataclass
class FakeSequence:
    uid: int
    tokens: list[int] = field(default_factory=list)
    freed: bool = False

    @property
    def n_past(self) -> int:
        return len(self.tokens)

    def truncate(self, n: int) -> None:
        assert 0 <= n <= len(self.tokens)
        del self.tokens[n:]


@dataclass
class FakeBatchRuntime:
    rule: Callable[[list[int]], int] = letters_rule
    n_vocab: int = N_VOCAB
    n_ctx: int = 64
    calls: list[list[tuple[int, list[int]]]] = field(default_factory=list)  # per step: (uid, tokens)
    freed: list[int] = field(default_factory=list)
    fail_next: bool = False
    delay_s: float = 0.0  # per step, to make a fast fake as slow as a model where timing matters
    _uids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_sequence(self) -> FakeSequence:
        return FakeSequence(next(self._uids))

    def free_sequence(self, seq: FakeSequence) -> None:
        assert not seq.freed, f"sequence {seq.uid} freed twice"
        seq.freed = True
        self.freed.append(seq.uid)

    def step(self, batch: list[tuple[FakeSequence, list[int]]]) -> list[np.ndarray]:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("scripted backend failure")
        self.calls.append([(seq.uid, list(tokens)) for seq, tokens in batch])
        if self.delay_s:
            time.sleep(self.delay_s)
        rows = []
        for seq, tokens in batch:
            assert not seq.freed, f"sequence {seq.uid} used after it was freed"
            seq.tokens.extend(tokens)
            assert len(seq.tokens) <= self.n_ctx
            rows.append(self._logits(seq.tokens))
        return rows

    def eval(self, seq: FakeSequence, tokens: list[int], all_logits: bool = False) -> np.ndarray:
        """Single-sequence path, as `generate()` uses it: same logits as `step`."""
        return self.step([(seq, tokens)])[0][None, :]

    def _logits(self, prefix: list[int]) -> np.ndarray:
        # A spread of values (so top-k/top-p/logprobs have something to rank) with a clear winner.
        seed = zlib.crc32(np.asarray(prefix, np.int64).tobytes())
        row = np.random.default_rng(seed).standard_normal(self.n_vocab).astype(np.float32)
        row[self.rule(prefix)] = 12.0
        return row


@dataclass
class GreedyStepsRuntime(FakeBatchRuntime):
    """A FakeBatchRuntime that also serves continuations, with BackendClient.step_continue's contract:
    each continuing sequence's next token (the argmax, or with sampling[i] what that Continuation's
    sampler would choose, continuing its generator) is fed as one more batched step, a stop id ends
    it unfed. `greedy_calls`
    records the greedy_steps of each call, `sampled_calls` how many sequences of each call sampled;
    `calls` every model step."""

    greedy_calls: list[list[int]] = field(default_factory=list)
    sampled_calls: list[int] = field(default_factory=list)

    def step_continue(
        self, batch: list[tuple[FakeSequence, list[int]]], greedy_steps: list[int], stop_token_ids,
        sampling=None,
    ) -> list[tuple[list[int], np.ndarray]]:
        sampling = sampling or [None] * len(batch)
        self.greedy_calls.append(list(greedy_steps))
        self.sampled_calls.append(sum(sp is not None for sp in sampling))
        rows = self.step(batch)
        chosen: list[list[int]] = [[] for _ in batch]
        samplers = {}
        for i, cont in enumerate(sampling):
            if cont is not None:
                sampler = Sampler(cont.params)
                sampler.rng = cont.rng
                samplers[i] = (sampler, cont.prompt_tail + cont.generated, len(cont.prompt_tail), cont)
        active = [i for i, n in enumerate(greedy_steps) if n]
        while active:
            for i in active:
                if i not in samplers:
                    chosen[i].append(int(rows[i].argmax()))
                    continue
                sampler, history, n_prompt, cont = samplers[i]
                choice = sampler.choose(rows[i], history, n_prompt=n_prompt)
                history.append(choice.token_id)
                chosen[i].append(choice.token_id)
                if choice.logprob is not None:
                    cont.logprobs.append(choice)
            fed = [i for i in active if chosen[i][-1] not in stop_token_ids]
            if fed:
                for i, row in zip(fed, self.step([(batch[i][0], [chosen[i][-1]]) for i in fed]), strict=True):
                    rows[i] = row
            active = [i for i in fed if len(chosen[i]) < greedy_steps[i]]
        return list(zip(chosen, rows, strict=True))
