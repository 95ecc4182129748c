"""`serve()`: run a plugin servicer as a Tritium plugin process.

It does everything the launch protocol (sdk/HANDSHAKE.md) asks of a plugin: refuse to run by hand,
name the process `tritium-plugin <kind> <name>`, bind a unix socket in a private folder, serve the
kind's service + `Plugin` + `grpc.health.v1.Health`, print the handshake line, and exit cleanly on
Shutdown, SIGTERM or the host's disappearance (EOF on stdin).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc

from . import fastlane, handshake
from .base import KIND_ENUM, REGISTRARS, PluginBase
from .config import ConfigError
from .shm import remove_segments_of

log = logging.getLogger("tritium.sdk")

# Largest gRPC message either side accepts; bulk data belongs in shared memory, so anything near this
# size is a protocol fault, not a big tensor.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RUN_BY_HAND_MESSAGE = """\
This is a Tritium plugin ({kind} "{name}"). It is not meant to be run by hand: the Tritium core starts it,
talks to it over gRPC and stops it. To use it, put its folder in a plugin directory (see
`tritium plugins list`) or in TRITIUM_PLUGIN_PATH.
"""


def set_process_title(kind: str, name: str) -> None:
    """Make `ps` show `tritium-plugin <kind> <name>` for this process (best effort)."""
    title = f"tritium-plugin {kind} {name}"
    try:
        import setproctitle

        setproctitle.setproctitle(title)
        return
    except ImportError:
        pass
    try:  # without setproctitle, at least the 15-character comm name shows in `ps -o comm`/top
        with open("/proc/self/comm", "w") as f:
            f.write(f"tp-{kind[:4]}-{name}"[:15])
    except OSError:
        pass


class _InFlight(grpc.ServerInterceptor):
    """Counts unary calls in progress (reported by Shutdown)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, delta: int) -> None:
        """Count calls that did not come through gRPC (the fast lane)."""
        with self._lock:
            self.count += delta

    def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001, ANN201
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def counted(request, context):  # noqa: ANN001, ANN202
            with self._lock:
                self.count += 1
            try:
                return inner(request, context)
            finally:
                with self._lock:
                    self.count -= 1

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _request_class(kind: str, method: str) -> type:
    """The request message class of `method` of `kind`'s service."""
    if kind == "backend":
        from tritium.protos.tritium.plugin.v1 import backend_pb2

        return getattr(backend_pb2, f"{method}Request")
    from tritium.protos.tritium.plugin.v1 import scheduler_pb2

    return getattr(scheduler_pb2, f"{method}Request")


class _PluginService(common_pb2_grpc.PluginServicer):
    """The common `tritium.plugin.v1.Plugin` service, delegating to the author's hooks."""

    def __init__(
        self, servicer: PluginBase, name: str, version: str, stop: threading.Event, inflight: _InFlight
    ) -> None:
        self._servicer = servicer
        self._name = name
        self._version = version
        self._stop = stop
        self._inflight = inflight
        self.drain_deadline_s = 5.0
        self.drain = True
        self._lane: fastlane.FastLaneServer | None = None
        self._lane_methods: list[str] = []
        self._lane_lock = threading.Lock()

    def Info(self, request, context):  # noqa: ANN001, ANN201, N802
        return common_pb2.InfoResponse(
            name=self._name,
            kind=KIND_ENUM[self._servicer.kind],
            version=self._version,
            api_version=handshake.API_VERSION,
            capabilities=self._servicer.capabilities(),
            pid=os.getpid(),
        )

    def Configure(self, request, context):  # noqa: ANN001, ANN201, N802
        which = request.WhichOneof("config")
        if which != self._servicer.config_field:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"plugin {self._name} is a {self._servicer.kind} plugin; it takes "
                f"'{self._servicer.config_field}' config, not {which!r}",
            )
        try:
            applied = self._servicer.configure(getattr(request, which), request.validate_only)
        except ConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        resp = common_pb2.ConfigureResponse()
        getattr(resp, which).CopyFrom(applied)
        return resp

    def Metrics(self, request, context):  # noqa: ANN001, ANN201, N802
        return common_pb2.MetricsResponse(metrics=self._servicer.metrics())

    def FastLane(self, request, context):  # noqa: ANN001, ANN201, N802
        with self._lane_lock:
            if self._lane is not None:
                return common_pb2.FastLaneResponse(enabled=True, methods=self._lane_methods)
            value = os.environ.get(fastlane.ENV, "")
            names = fastlane.METHODS_OF_KIND.get(self._servicer.kind, ())
            if not value or not names:
                why = "no fast lane was passed at spawn" if not value else "this kind has no hot path"
                return common_pb2.FastLaneResponse(enabled=False, reason=why)
            try:
                fd_in, fd_out, slot_fd, slot_bytes = fastlane.parse_env(value)
                if request.slot_bytes and request.slot_bytes != slot_bytes:
                    raise ValueError(f"slot is {slot_bytes} bytes here, {request.slot_bytes} at the host")
                kind, svc = self._servicer.kind, self._servicer
                methods = {fastlane.METHOD_IDS[n]: (_request_class(kind, n), getattr(svc, n)) for n in names}
                lane = fastlane.FastLaneServer(
                    fd_in, fd_out, slot_fd, slot_bytes, methods, on_call=self._inflight.add
                )
            except (ValueError, OSError) as exc:
                return common_pb2.FastLaneResponse(enabled=False, reason=str(exc))
            lane.start()
            self._lane, self._lane_methods = lane, list(names)
            return common_pb2.FastLaneResponse(enabled=True, methods=names)

    def Shutdown(self, request, context):  # noqa: ANN001, ANN201, N802
        self.drain = request.drain
        self.drain_deadline_s = (request.deadline_ms or 5000) / 1000.0
        # This call itself is in flight; do not count it.
        in_flight = max(self._inflight.count - 1, 0)
        self._stop.set()
        return common_pb2.ShutdownResponse(in_flight=in_flight)


def _watch_stdin(stop: threading.Event) -> None:
    # EOF on the pipe from the host means the host process is gone: do not outlive it.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def check_cookie(kind: str, name: str) -> None:
    """Exit with status 1 and an explanation unless a Tritium host started this process."""
    if os.environ.get(handshake.COOKIE_KEY) != handshake.COOKIE_VALUE:
        sys.stderr.write(RUN_BY_HAND_MESSAGE.format(kind=kind, name=name))
        sys.stderr.flush()
        raise SystemExit(1)


def serve(servicer: PluginBase, kind: str, name: str, version: str, *, max_workers: int = 8) -> None:
    """Serve `servicer` as the plugin `name` of `kind` until shut down, then exit the process.

    Never returns. Exits with status 1 (and a message on stderr) when run by hand.
    """
    if kind not in REGISTRARS or servicer.kind != kind:
        raise ValueError(f"servicer {type(servicer).__name__} is a {servicer.kind!r} plugin, not {kind!r}")
    check_cookie(kind, name)
    set_process_title(kind, name)
    logging.basicConfig(
        level=os.environ.get("TRITIUM_PLUGIN_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format=f"%(asctime)s {kind}/{name} %(levelname)s %(message)s",
    )

    base = os.environ.get("TRITIUM_PLUGIN_RUNTIME_DIR") or None
    sock_dir = tempfile.mkdtemp(prefix="tritium-plugin-", dir=base)  # mode 0700: private to this user
    sock_path = os.path.join(sock_dir, "plugin.sock")

    stop = threading.Event()
    inflight = _InFlight()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{kind}-{name}"),
        interceptors=[inflight],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register, service_name = REGISTRARS[kind]
    register(servicer, server)
    common = _PluginService(servicer, name, version, stop, inflight)
    common_pb2_grpc.add_PluginServicer_to_server(common, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for svc in ("", service_name, "tritium.plugin.v1.Plugin"):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"unix:{sock_path}")
    server.start()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if os.environ.get("TRITIUM_PLUGIN_WATCH_STDIN") == "1":
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True, name="stdin-watch").start()

    sys.stdout.write(handshake.format_handshake(sock_path) + "\n")
    sys.stdout.flush()

    while not stop.wait(0.5):
        pass
    health_servicer.enter_graceful_shutdown()
    grace = common.drain_deadline_s if common.drain else 0.0
    t0 = time.monotonic()
    server.stop(grace).wait(grace + 1.0)
    log.info("stopped after %.3f s", time.monotonic() - t0)
    try:
        servicer.on_shutdown()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
        remove_segments_of(os.getpid())  # whatever shared memory the author forgot to close
    sys.stdout.flush()
    os._exit(0)
