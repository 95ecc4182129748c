"""What a request asks of the sampler: the knobs of one generation and their valid ranges."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

from tritium.core.errors import SamplingError

# OpenAI's documented ranges; values beyond them only produce degenerate text.
MAX_ABS_OPENAI_PENALTY = 2.0
MAX_LOGPROBS = 20


# Temperatures below this are treated as 0 (greedy).
GREEDY_TEMPERATURE = 1e-5


@dataclass
class SamplingParams:
    """Sampling and stopping parameters of one generation.

    temperature 0 means greedy (first argmax). top_k 0, top_p 1, min_p 0 and the neutral penalties
    (repetition 1, frequency 0, presence 0) switch their stage off. `max_tokens=None` generates until an
    end-of-generation token or a full context. `logprobs=N` asks for the chosen token's log-probability
    plus the N most likely alternatives at each step.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    penalty_last_n: int = 64  # window of the repetition penalty; -1 = the whole history
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int | None = 16
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        # Below this, logits / temperature overflows float32 to inf and the softmax to NaN; the
        # distribution is a point mass on the argmax anyway (vLLM draws the same line).
        return self.temperature < GREEDY_TEMPERATURE

    @property
    def argmax_only(self) -> bool:
        """Each token is the argmax of the raw logits (greedy, no penalties, no logprobs): a backend
        can choose it without the sampler (a plain greedy continuation)."""
        no_repetition = self.repetition_penalty == 1.0 or self.penalty_last_n == 0
        return (self.greedy and no_repetition and not self.frequency_penalty and not self.presence_penalty
                and self.logprobs is None)

    def validate(self) -> SamplingParams:
        """Raise SamplingError naming the first invalid field; return self so calls can chain."""
        _check_real("temperature", self.temperature, lambda v: v >= 0.0, "a finite number >= 0")
        _check_int("top_k", self.top_k, lambda v: v >= 0, "an integer >= 0 (0 = off)")
        _check_real("top_p", self.top_p, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")
        _check_real("min_p", self.min_p, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
        _check_real("repetition_penalty", self.repetition_penalty, lambda v: v > 0.0, "a finite number > 0")
        _check_int("penalty_last_n", self.penalty_last_n, lambda v: v >= -1, "an integer >= -1 (-1 = all)")
        in_openai_range = "a number in [-2, 2]"
        _check_real("frequency_penalty", self.frequency_penalty,
                    lambda v: abs(v) <= MAX_ABS_OPENAI_PENALTY, in_openai_range)
        _check_real("presence_penalty", self.presence_penalty,
                    lambda v: abs(v) <= MAX_ABS_OPENAI_PENALTY, in_openai_range)
        if self.seed is not None:
            _check_int("seed", self.seed, lambda v: v >= 0, "an integer >= 0 or None")
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens, lambda v: v >= 1, "an integer >= 1 or None")
        if isinstance(self.stop, str) or not isinstance(self.stop, (list, tuple)):
            raise SamplingError(f"stop: expected a list of strings, got {self.stop!r}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise SamplingError(f"stop: expected non-empty strings, got {s!r}")
        if not isinstance(self.stop_token_ids, (list, tuple)):
            raise SamplingError(f"stop_token_ids: expected a list of token ids, got {self.stop_token_ids!r}")
        for t in self.stop_token_ids:
            _check_int("stop_token_ids", t, lambda v: v >= 0, "token ids >= 0")
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, lambda v: 0 <= v <= MAX_LOGPROBS,
                       f"an integer in [0, {MAX_LOGPROBS}] or None")
        return self


def _check_real(name: str, value: object, ok: Callable[[float], bool], expected: str) -> None:
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not ok(value):
        raise SamplingError(f"{name}: expected {expected}, got {value!r}")


def _check_int(name: str, value: object, ok: Callable[[float], bool], expected: str) -> None:
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or not ok(value):
        raise SamplingError(f"{name}: expected {expected}, got {value!r}")
