"""Errors of the serving layer; the HTTP and gRPC APIs map each to a status code."""

from __future__ import annotations

from tritium.core.errors import TritiumError


class QueueFullError(TritiumError):
    """The admission queue holds its maximum of waiting requests; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineStoppedError(TritiumError):
    """The engine loop is not running (not started yet, or shut down), so it accepts no request."""
