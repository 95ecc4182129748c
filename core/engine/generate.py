"""One generation, start to finish: tokenize, check the context, prefill, then decode token by token.

`generate` yields a `GenerationChunk` per sampled token. The text of each chunk is the delta that token
adds, decoded incrementally (never half a UTF-8 character) and passed through the stop-string matcher
(never any part of a stop string). The last chunk carries the finish reason and the timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from tritium.core.engine.prompt_cache import PromptCache
from tritium.core.engine.stop_strings import StopStringMatcher
from tritium.core.errors import ContextOverflowError, TokenizerError
from tritium.core.sampling import Sampler, SamplingParams
from tritium.core.tokenizer import StreamDecoder

FinishReason = Literal["stop", "length"]


@dataclass
class GenerationStats:
    """Token counts and timings of one generation (times in seconds, of the engine's own work only)."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose KV was reused from a PromptCache
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0  # sampling + one-token evaluations, excluding the consumer's time

    @property
    def prefill_tokens_per_second(self) -> float:
        evaluated = self.prompt_tokens - self.cached_prompt_tokens
        return evaluated / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        return self.completion_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class GenerationChunk:
    """One sampled token and the text it adds.

    `text` may be empty (bytes of an unfinished UTF-8 character, or text held back because it could be
    the start of a stop string) and may carry text held back from earlier tokens. A token that ends
    generation (EOS, a stop token, or the token completing a stop string) adds no text of its own.
    `finish_reason` and `stats` are set on the last chunk only.
    """

    token_id: int
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    stats: GenerationStats | None = None


def generate(model: Any, prompt: str | Sequence[int], params: SamplingParams, *,
             runtime: Any = None, cache: PromptCache | None = None) -> Iterator[GenerationChunk]:
    """Generate from `prompt` (text, tokenized as the model's metadata says, or token ids).

    Everything that can be refused is checked before this returns, so errors surface at the call and
    not in the middle of a stream: SamplingError (invalid params), TokenizerError (empty prompt, ids
    outside the vocabulary), ContextOverflowError (prompt plus max_tokens beyond the context window).
    `model` is a LoadedModel (config, weights, tokenizer); `runtime` a compute Runtime, created from the
    model when None. With a `cache`, the prompt's longest prefix already in the cache's sequence is not
    evaluated again (the stats count only the evaluated prompt tokens as prefill work).
    """
    params.validate()
    tokenizer = model.tokenizer
    if isinstance(prompt, str):
        ids = list(tokenizer.encode(prompt))
    else:
        ids = [int(t) for t in prompt]
    if not ids:
        raise TokenizerError("prompt: it encodes to no tokens (empty text and the model adds no BOS)")
    bad = [t for t in ids if not 0 <= t < tokenizer.n_vocab]
    if bad:
        raise TokenizerError(
            f"prompt: token id {bad[0]} is outside the vocabulary (0..{tokenizer.n_vocab - 1})")
    if runtime is None:
        from tritium.core.compute import Runtime

        runtime = Runtime(model.config, model.weights)
    n_ctx = context_size(model, runtime)
    check_context(len(ids), params.max_tokens, n_ctx)
    return _decode_loop(model, runtime, ids, params, n_ctx, PromptCache() if cache is None else cache)


def context_size(model: Any, runtime: Any) -> int:
    """The context window in tokens: the runtime's (it may be set smaller), else the model's."""
    return int(getattr(runtime, "n_ctx", None) or model.config.n_ctx)


def check_context(n_prompt: int, max_tokens: int | None, n_ctx: int) -> None:
    """Raise ContextOverflowError unless the prompt and the requested tokens fit in n_ctx."""
    if max_tokens is None:
        if n_prompt >= n_ctx:
            raise ContextOverflowError(
                f"the prompt has {n_prompt} tokens but the context window is {n_ctx} tokens, "
                f"which leaves no room for a generated token")
    elif n_prompt + max_tokens > n_ctx:
        raise ContextOverflowError(
            f"the context window is {n_ctx} tokens but {n_prompt + max_tokens} were requested "
            f"({n_prompt} in the prompt, {max_tokens} to generate)")


def end_of_generation_ids(model: Any, params: SamplingParams) -> frozenset[int]:
    """The ids that end generation: stop_token_ids, plus the model's EOS ids unless ignore_eos."""
    ids = set(params.stop_token_ids)
    if not params.ignore_eos:
        ids.update(int(t) for t in getattr(model.tokenizer, "eos_ids", ()) or ())
        ids.update(int(t) for t in model.config.eos_token_ids)
    return frozenset(ids)


def _decode_loop(model: Any, runtime: Any, ids: list[int], params: SamplingParams,
                 n_ctx: int, cache: PromptCache) -> Iterator[GenerationChunk]:
    sampler = Sampler(params)
    decoder = StreamDecoder(model.tokenizer)  # generated ids have no BOS: every space is kept
    stops = StopStringMatcher(params.stop)
    enders = end_of_generation_ids(model, params)
    stats = GenerationStats(prompt_tokens=len(ids))
    history = list(ids)

    n_cached = cache.reuse(runtime, ids)
    stats.cached_prompt_tokens = n_cached
    t0 = time.perf_counter()
    logits = np.asarray(runtime.eval(cache.seq, ids[n_cached:]))
    cache.tokens.extend(ids[n_cached:])
    stats.prefill_seconds = time.perf_counter() - t0

    while True:
        t0 = time.perf_counter()
        choice = sampler.choose(logits[-1], history, n_prompt=len(ids))
        token = choice.token_id
        history.append(token)
        stats.completion_tokens += 1
        finish: FinishReason | None = None
        if token in enders:
            finish, text = "stop", stops.push(decoder.flush()) + stops.flush()
        else:
            text = stops.push(decoder.feed(token))
            if stops.stopped:
                finish = "stop"
            elif stats.completion_tokens == params.max_tokens or len(history) >= n_ctx:
                text += stops.push(decoder.flush())
                text += stops.flush()
                finish = "stop" if stops.stopped else "length"
        stats.decode_seconds += time.perf_counter() - t0
        # Yield before evaluating the token, so a streaming client sees it one forward pass earlier.
        yield GenerationChunk(token, text, choice.logprob, choice.top_logprobs, finish,
                              stats if finish else None)
        if finish:
            return
        t0 = time.perf_counter()
        logits = np.asarray(runtime.eval(cache.seq, [token]))
        cache.tokens.append(token)
        stats.decode_seconds += time.perf_counter() - t0
