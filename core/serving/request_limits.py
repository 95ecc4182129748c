"""Limits every API applies before a request reaches the engine: context window, max_tokens, counts.

Shared by the HTTP and gRPC front ends, which map `RequestLimitError` to a 400 / INVALID_ARGUMENT
naming `field` (the name the client used: "prompt", "messages", "max_completion_tokens", ...).
"""

from __future__ import annotations

from tritium.core.errors import TritiumError

GREEDY_BELOW = 1e-5  # temperatures below this are greedy, as in vLLM (1/T would overflow float32)


class RequestLimitError(TritiumError):
    """A request exceeds a server limit; `field` names the request field, `code` the OpenAI code."""

    def __init__(self, field: str, message: str, code: str = "invalid_value") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code


def check_lengths(n_prompt: int, max_tokens: int | None, *, n_ctx: int, max_tokens_limit: int,
                  prompt_field: str = "prompt", max_tokens_field: str = "max_tokens") -> None:
    """Refuse a prompt that leaves no room in the context window, and a max_tokens over the server's
    limit or beyond what the context window leaves after the prompt."""
    if max_tokens is not None and max_tokens > max_tokens_limit:
        raise RequestLimitError(max_tokens_field,
                                f"at most {max_tokens_limit} on this server, got {max_tokens}")
    if n_prompt >= n_ctx:
        raise RequestLimitError(
            prompt_field, f"{n_prompt} tokens, but the context window is {n_ctx} tokens (the prompt must "
                          f"leave room for at least one generated token)", "context_length_exceeded")
    if max_tokens is not None and n_prompt + max_tokens > n_ctx:
        raise RequestLimitError(
            max_tokens_field, f"{max_tokens} tokens after a {n_prompt}-token prompt exceed the context "
                              f"window of {n_ctx} tokens (at most {n_ctx - n_prompt})",
            "context_length_exceeded")


def effective_max_tokens(requested: int | None, default: int | None, n_prompt: int, *, n_ctx: int,
                         max_tokens_limit: int) -> int:
    """The generation limit of a checked request: what it asked for, else `default` (None: as much as
    the context window leaves), never more than the server's limit or the room left."""
    if requested is not None:
        return requested
    room = min(n_ctx - n_prompt, max_tokens_limit)
    return min(default, room) if default is not None else room


def effective_temperature(value: float | None) -> float:
    """1.0 when unset (OpenAI's default); 0 (greedy) in [0, GREEDY_BELOW); anything else as given, for
    SamplingParams.validate to judge."""
    if value is None:
        return 1.0
    return 0.0 if 0.0 <= value < GREEDY_BELOW else float(value)
