"""Per-request output bookkeeping: detokenize each sampled token and decide when generation ends.

The rules are `tritium.core.engine.generate`'s, token for token: the model's end-of-generation ids and
`stop_token_ids` end with "stop" and add no text; a completed stop string ends with "stop" and none of
it is emitted; `max_tokens` or a full context window end with "length" after flushing held-back text.
"""

from __future__ import annotations

from typing import Any

from tritium.core.engine.generate import end_of_generation_ids
from tritium.core.engine.stop_strings import StopStringMatcher
from tritium.core.sampling import SamplingParams
from tritium.core.serving.request_stream import FinishReason
from tritium.core.tokenizer import StreamDecoder


class OutputTracker:
    """Feeds one request's generated ids through the stream decoder and the stop-string matcher."""

    def __init__(self, model: Any, params: SamplingParams, n_prompt: int, n_ctx: int) -> None:
        self.params = params
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx
        self.decoder = StreamDecoder(model.tokenizer)  # generated ids have no BOS: every space is kept
        self.stops = StopStringMatcher(params.stop)
        self.enders = end_of_generation_ids(model, params)
        self.generated = 0

    def tokens_left(self) -> int:
        """How many more tokens may be generated before max_tokens or the context window ends it."""
        left = self.n_ctx - self.n_prompt - self.generated
        if self.params.max_tokens is not None:
            left = min(left, self.params.max_tokens - self.generated)
        return left

    def accept(self, token: int) -> tuple[str, FinishReason | None]:
        """The text `token` releases and the finish reason if it ends the generation."""
        self.generated += 1
        if token in self.enders:
            return self.stops.push(self.decoder.flush()) + self.stops.flush(), "stop"
        text = self.stops.push(self.decoder.feed(token))
        if self.stops.stopped:
            return text, "stop"
        if self.tokens_left() <= 0:
            text += self.stops.push(self.decoder.flush())
            text += self.stops.flush()
            return text, "stop" if self.stops.stopped else "length"
        return text, None
