"""Finds stop strings in streamed text without ever emitting a stop string or a part of one."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Streams text through, cutting it at the earliest stop string.

    Text that could be the start of a stop string is held back until the next delta decides it, so a
    stop string split across token boundaries is still found and none of it is ever emitted.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add a delta; return the text now safe to emit. After a match, `stopped` is True."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._pending + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._pending = ""
            return buf[: min(hits)]
        keep = self._held_back_length(buf)
        self._pending = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """The held-back text, once generation ended without completing a stop string."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _held_back_length(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best
