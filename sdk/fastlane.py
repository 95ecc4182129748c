"""The fast lane: the plugin side of a shared-memory request/response slot for the hot-path calls.

gRPC over a unix socket costs a few hundred microseconds per call in Python; a backend's `Step` and a
scheduler's `Schedule` run once per engine step, so that cost shows in tokens/s. The host therefore
passes every plugin, at spawn, two pipes and one memfd (fds named in $TRITIUM_PLUGIN_FASTLANE as
`<doorbell from host>,<doorbell to host>,<slot fd>,<slot bytes>`). When the host calls
`Plugin/FastLane`, one thread starts serving:

  host writes   [method u32][0 u32][length u64][request protobuf] into the slot, then 1 byte on pipe 1
  plugin writes [status u32][0 u32][length u64][response protobuf | error details] into the slot,
                then 1 byte on pipe 2

calling the very servicer method the gRPC path calls, with the same protobuf bytes. The host holds
only the read end of pipe 2, so a plugin death reads as EOF there (the host turns it into UNAVAILABLE,
exactly like a broken gRPC channel); a hang is caught by the host's poll timeout (DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
from collections.abc import Callable

import grpc

log = logging.getLogger("tritium.sdk.fastlane")

ENV = "TRITIUM_PLUGIN_FASTLANE"
HEADER = struct.Struct("<IIQ")  # method id or status code, reserved, payload length
# Wire ids of the methods a fast lane can carry (never reused).
METHOD_IDS = {"Step": 1, "Schedule": 2}
# The kind's service methods served on the fast lane, by kind.
METHODS_OF_KIND = {"backend": ("Step",), "scheduler": ("Schedule",)}
_STATUS_OF_CODE = {code: code.value[0] for code in grpc.StatusCode}


def parse_env(value: str) -> tuple[int, int, int, int]:
    """The four integers of $TRITIUM_PLUGIN_FASTLANE; ValueError when it is not that."""
    parts = [int(x) for x in value.split(",")]
    if len(parts) != 4 or min(parts) < 0:
        raise ValueError(f"{ENV} must be '<fd in>,<fd out>,<slot fd>,<slot bytes>', got {value!r}")
    return parts[0], parts[1], parts[2], parts[3]


class _AbortError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _LaneContext:
    """The part of grpc.ServicerContext that servicers use, for a call that came by the fast lane."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _AbortError(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "fastlane"

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False  # nothing to call back on: the call ends when the method returns

    def set_trailing_metadata(self, metadata: tuple) -> None:
        pass


class FastLaneServer:
    """Serves calls from the host's slot on one thread until the host closes its doorbell."""

    def __init__(
        self,
        fd_in: int,
        fd_out: int,
        slot_fd: int,
        slot_bytes: int,
        methods: dict[int, tuple[type, Callable]],
        on_call: Callable[[int], None] | None = None,
    ) -> None:
        if slot_bytes <= HEADER.size:
            raise ValueError(f"fast-lane slot of {slot_bytes} bytes is too small")
        self._in, self._out = fd_in, fd_out
        # Children of the plugin must not hold the doorbell: the host reads EOF only when every copy
        # of the out end is closed.
        os.set_inheritable(fd_in, False)
        os.set_inheritable(fd_out, False)
        self._slot = mmap.mmap(slot_fd, slot_bytes)
        os.close(slot_fd)  # the mapping keeps the memory; the fd is not needed any more
        self._capacity = slot_bytes - HEADER.size
        self._methods = methods
        self._on_call = on_call or (lambda delta: None)
        self._thread = threading.Thread(target=self._run, daemon=True, name="fastlane")

    def start(self) -> None:
        """Start the serving thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the serving thread to end (after the host closed its doorbell)."""
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            os.close(self._in)
            os.close(self._out)

    def _loop(self) -> None:
        while True:
            try:
                if not os.read(self._in, 1):
                    return  # the host closed its end: no more fast-lane calls
            except OSError:
                return
            self._on_call(1)
            try:
                status, payload = self._serve_one()
            finally:
                self._on_call(-1)
            if len(payload) > self._capacity:
                status = _STATUS_OF_CODE[grpc.StatusCode.RESOURCE_EXHAUSTED]
                payload = f"Sent message larger than max ({len(payload)} vs. {self._capacity})".encode()
            HEADER.pack_into(self._slot, 0, status, 0, len(payload))
            self._slot[HEADER.size : HEADER.size + len(payload)] = payload
            try:
                os.write(self._out, b"\x01")
            except OSError:
                return

    def _serve_one(self) -> tuple[int, bytes]:
        method, _, length = HEADER.unpack_from(self._slot, 0)
        entry = self._methods.get(method)
        if entry is None:
            return _STATUS_OF_CODE[grpc.StatusCode.UNIMPLEMENTED], f"method {method} not served".encode()
        if length > self._capacity:
            return _STATUS_OF_CODE[grpc.StatusCode.INVALID_ARGUMENT], b"request longer than the slot"
        request_cls, fn = entry
        ctx = _LaneContext()
        try:
            request = request_cls.FromString(self._slot[HEADER.size : HEADER.size + length])
            response = fn(request, ctx)
        except _AbortError as exc:
            return _STATUS_OF_CODE[exc.code], exc.details.encode(errors="replace")
        except Exception as exc:  # what gRPC reports for an exception escaping a servicer method
            if ctx.code is not None and ctx.code != grpc.StatusCode.OK:  # e.g. the generated UNIMPLEMENTED
                return _STATUS_OF_CODE[ctx.code], (ctx.details or str(exc)).encode(errors="replace")
            log.exception("fast-lane call failed")
            return _STATUS_OF_CODE[grpc.StatusCode.UNKNOWN], f"Exception calling application: {exc}".encode()
        if ctx.code is not None and ctx.code != grpc.StatusCode.OK:
            return _STATUS_OF_CODE[ctx.code], ctx.details.encode(errors="replace")
        if response is None:
            return _STATUS_OF_CODE[grpc.StatusCode.UNKNOWN], b"servicer returned no response"
        return 0, response.SerializeToString()
