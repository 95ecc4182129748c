"""The host side of the fast lane (wire format and plugin side: tritium.sdk.fastlane).

`HostLane.create()` makes the two doorbell pipes and the memfd slot before a plugin is spawned; the
launcher passes the plugin's ends (pass_fds) and closes them here after the spawn, so that the host
holds only the write end of the host->plugin pipe and the read end of the plugin->host pipe: when the
plugin dies, reading its doorbell returns EOF at once. `negotiate()` asks the plugin (gRPC
`Plugin/FastLane`) to serve there; `call()` then carries one hot-path call.

Errors are raised as `FastLaneError`, a grpc.RpcError with the code the gRPC path would give for the
same fault, so `Supervisor.call` handles both lanes alike: plugin gone -> UNAVAILABLE (retried on the
restarted instance), no answer in time -> DEADLINE_EXCEEDED (the hung plugin is killed), oversized
answer -> RESOURCE_EXHAUSTED "message", undecodable answer -> INTERNAL "deserializing".
"""

from __future__ import annotations

import mmap
import os
import select
import threading
import time

import grpc
from google.protobuf.message import DecodeError, Message
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc
from tritium.sdk import fastlane as wire
from tritium.sdk.serve import MAX_MESSAGE_BYTES

ENABLE_ENV = "TRITIUM_FASTLANE"  # "0" turns the fast lane off for every plugin this host starts
SLOT_BYTES = MAX_MESSAGE_BYTES + wire.HEADER.size  # the same message limit as gRPC
_PEER_CHECK_S = 0.25  # a waiting call looks at peer_gone this often (EOF normally comes first)
_CODE_OF_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def enabled_by_env(env: dict[str, str] | None = None) -> bool:
    """False when $TRITIUM_FASTLANE is "0" (or "false", "off", "no")."""
    value = (os.environ if env is None else env).get(ENABLE_ENV, "1").strip().lower()
    return value not in ("0", "false", "off", "no")


class FastLaneError(grpc.RpcError):
    """A fast-lane call failed; `code()` and `details()` as on a gRPC error of the same fault."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class HostLane:
    """One plugin process's fast lane, as the host holds it. Thread-safe: one call at a time; a caller
    that finds it busy gets None from call() and goes by gRPC instead."""

    def __init__(self, slot_bytes: int = SLOT_BYTES) -> None:
        self.slot_bytes = slot_bytes
        self._in_r, self._in_w = os.pipe()  # host -> plugin doorbell
        self._out_r, self._out_w = os.pipe()  # plugin -> host doorbell
        self._slot_fd = os.memfd_create("tritium-fastlane", os.MFD_CLOEXEC)
        os.ftruncate(self._slot_fd, slot_bytes)  # sparse: only pages used are backed
        self._slot = mmap.mmap(self._slot_fd, slot_bytes)
        self._capacity = slot_bytes - wire.HEADER.size
        self._poller = select.poll()  # made once: a call is on the hot path of every engine step
        self._poller.register(self._out_r, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._lock = threading.Lock()
        self.methods: frozenset[str] = frozenset()
        self.calls = 0  # calls answered on this lane (errors included)
        self.closed = False
        # Set by the supervisor's watcher when the process has exited: a call waiting on a doorbell
        # that some surviving child of the plugin still holds open gives up instead of waiting for EOF.
        self.peer_gone = False
        self._child_open = True

    # ---- spawn ------------------------------------------------------------------------------------
    def child_fds(self) -> tuple[int, int, int]:
        """The fds the plugin inherits (pass_fds)."""
        return (self._in_r, self._out_w, self._slot_fd)

    def env_value(self) -> str:
        """Value of $TRITIUM_PLUGIN_FASTLANE for the plugin (fd numbers survive pass_fds unchanged)."""
        return f"{self._in_r},{self._out_w},{self._slot_fd},{self.slot_bytes}"

    def after_spawn(self) -> None:
        """Close the plugin's ends (and the slot fd: the mapping stays) here: from now on EOF on the
        doorbell means the plugin is gone. Each fd is closed exactly once (a second close could hit
        a number reused by another part of the process, e.g. gRPC)."""
        if self._child_open:
            self._child_open = False
            for fd in self.child_fds():
                os.close(fd)

    def negotiate(self, channel: grpc.Channel, timeout: float) -> bool:
        """Ask the plugin to serve its hot path here; closes the lane and returns False when it will not
        (a plugin not built on the SDK answers UNIMPLEMENTED)."""
        try:
            resp = common_pb2_grpc.PluginStub(channel).FastLane(
                common_pb2.FastLaneRequest(slot_bytes=self.slot_bytes), timeout=timeout
            )
        except grpc.RpcError:
            resp = common_pb2.FastLaneResponse(enabled=False)
        if not resp.enabled:
            self.close()
            return False
        self.methods = frozenset(resp.methods)
        return True

    # ---- calls ------------------------------------------------------------------------------------
    def call(self, method: str, request: Message, response_cls: type, timeout: float) -> Message | None:
        """Carry `request` to the plugin's `method` and return its answer; None when the lane is closed,
        busy or does not carry `method` (the caller then uses gRPC). Raises FastLaneError."""
        if self.closed or method not in self.methods:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self.closed:
                return None
            data = request.SerializeToString()
            if len(data) > self._capacity:
                return None  # gRPC gives the usual message-size error
            wire.HEADER.pack_into(self._slot, 0, wire.METHOD_IDS[method], 0, len(data))
            self._slot[wire.HEADER.size : wire.HEADER.size + len(data)] = data
            try:
                os.write(self._in_w, b"\x01")
            except OSError:  # EPIPE: the plugin is gone
                self._close_locked()
                raise FastLaneError(
                    grpc.StatusCode.UNAVAILABLE, f"{method}: fast lane closed (plugin gone)"
                ) from None
            return self._answer(method, response_cls, timeout)
        except FastLaneError:
            raise
        except BaseException:
            # Interrupted between request and answer (e.g. KeyboardInterrupt): a late answer must not be
            # taken for the next call's, so this lane is done.
            self._close_locked()
            raise
        finally:
            self._lock.release()

    def _answer(self, method: str, response_cls: type, timeout: float) -> Message:
        poller = self._poller
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                # The slot may still be written later: this lane is done (the supervisor kills the plugin).
                self._close_locked()
                raise FastLaneError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            if poller.poll(max(int(min(left, _PEER_CHECK_S) * 1000), 1)):
                break
            if self.peer_gone:
                self._close_locked()
                raise FastLaneError(grpc.StatusCode.UNAVAILABLE, f"{method}: plugin process gone")
        if not os.read(self._out_r, 1):
            self._close_locked()
            raise FastLaneError(grpc.StatusCode.UNAVAILABLE, f"{method}: fast lane closed (plugin gone)")
        self.calls += 1
        status, _, length = wire.HEADER.unpack_from(self._slot, 0)
        if length > self._capacity:
            self._close_locked()
            raise FastLaneError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({length} vs. {self._capacity})",
            )
        payload = self._slot[wire.HEADER.size : wire.HEADER.size + length]
        if status != 0:
            code = _CODE_OF_STATUS.get(status, grpc.StatusCode.UNKNOWN)
            raise FastLaneError(code, payload.decode(errors="replace"))
        try:
            return response_cls.FromString(payload)
        except DecodeError:
            self._close_locked()
            raise FastLaneError(grpc.StatusCode.INTERNAL, "Exception deserializing response!") from None

    # ---- teardown ---------------------------------------------------------------------------------
    def close(self, wait_s: float = 5.0) -> None:
        """Close the host's ends (the plugin's lane thread then ends). Waits up to wait_s for a call
        in progress (and leaves the lane to it after that); idempotent."""
        if not self._lock.acquire(timeout=wait_s):
            return  # a call is stuck in it; it closes the lane itself when it fails
        try:
            self._close_locked()
        finally:
            self._lock.release()

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.after_spawn()
        for fd in (self._in_w, self._out_r):  # the slot fd went with the plugin's ends (after_spawn)
            os.close(fd)
        try:
            self._slot.close()
        except BufferError:
            pass
