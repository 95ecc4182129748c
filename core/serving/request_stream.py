"""The channel from the engine thread to one request's consumer: sync or asyncio, cancellable.

The engine thread calls `push` (never blocks); the consumer iterates the handle, with `for` in a
thread or `async for` in an event loop. An asyncio consumer is woken with `call_soon_threadsafe`, so the
engine never touches the loop's objects from its own thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class RequestOutput:
    """One sampled token (or a final event without a token) of a request.

    `text` is the delta the token adds (whole characters, stop strings never included; may be "").
    `finish_reason` is set on the last event only, which also carries the final token counts; "error"
    events carry `error`. `token_id` is None for an event that ends the request without a new token
    (cancellation, an engine error).
    """

    token_id: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class RequestHandle:
    """A submitted request: iterate it for its outputs; `cancel()` stops it at the next step."""

    def __init__(self, request_id: int, prompt_tokens: int, on_cancel: Callable[[int], None]) -> None:
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self._on_cancel = on_cancel
        self._events: queue.SimpleQueue[RequestOutput] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._finished = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            self._wakeup: asyncio.Event | None = asyncio.Event()
        except RuntimeError:
            self._loop, self._wakeup = None, None

    @property
    def finished(self) -> bool:
        """True once the consumer has received the last event."""
        return self._finished

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the engine to stop this request; it frees the KV cache at the next step boundary."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._on_cancel(self.request_id)

    def push(self, event: RequestOutput) -> None:
        """Engine side: deliver an event (thread-safe, never blocks)."""
        self._events.put(event)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:
                pass  # the consumer's loop is closed: nobody is listening any more

    def __iter__(self) -> Iterator[RequestOutput]:
        while not self._finished:
            event = self._events.get()
            self._finished = event.finish_reason is not None
            yield event

    async def __aiter__(self) -> AsyncIterator[RequestOutput]:
        if self._wakeup is None:
            raise RuntimeError("this request was submitted outside an event loop: iterate it with `for`")
        while not self._finished:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                self._wakeup.clear()
                # Re-check after clearing: an event pushed in between has already scheduled a set().
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    await self._wakeup.wait()
                    continue
            self._finished = event.finish_reason is not None
            yield event
