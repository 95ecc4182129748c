"""Plugins that misbehave on purpose (and one well-behaved toy backend), for the plugin host's tests.

Run as `python plugin_main.py <mode>`: the `make_package` fixture (tests/plugin_host/conftest.py) copies
this file into a temporary package folder and writes its plugin.toml.

Modes:
  garbage_handshake     prints a line that is not a handshake, then waits
  no_handshake          prints nothing and waits forever
  exit_early            writes to stderr and exits with status 3
  wrong_api             announces tritium.plugin.v9
  wrong_identity        serves, but Info reports another name
  scheduler_hang        Schedule never answers
  scheduler_malformed   Schedule answers bytes that are not a protobuf message
  scheduler_oversized   Schedule answers a 20 MiB message
  scheduler_crash_once  Schedule exits (status 7) the first time (marker file), then works
  scheduler_segv_once   Schedule segfaults the first time (marker file), then works
  toy_backend           a deterministic toy model (see ToyBackend), TOY_STEP_DELAY_S seconds per step
  backend_wrong_shape   toy backend whose logits have one row too many
  backend_wrong_dtype   toy backend whose logits are float16
  backend_greedy_overrun  toy backend claiming the capability greedy_steps, answering one greedy
                        token more than asked
  backend_sampled_no_rng  toy backend claiming sampled_steps, answering a sampled continuation (with
                        argmax tokens) but no generator state
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritium.protos.tritium.plugin.v1 import backend_pb2, common_pb2, common_pb2_grpc, scheduler_pb2
from tritium.sdk import BackendPlugin, SchedulerPlugin, handshake, serve, shm

NAME = os.environ.get("TRITIUM_PLUGIN_NAME", "bad")
VERSION = sys.argv[2] if len(sys.argv) > 2 else "0.1.0"  # `plugin_main.py <mode> [version]`
N_VOCAB = 50


def _wait_forever() -> None:
    while True:
        time.sleep(3600)


class ToyBackend(BackendPlugin):
    """Logits depend on the whole token history through a running hash, so a backend that lost a
    sequence's KV state and did not replay it would produce different tokens."""

    def __init__(self, mode: str = "toy_backend") -> None:
        self.mode = mode
        self.delay = float(os.environ.get("TOY_STEP_DELAY_S", "0"))
        self.seqs: dict[int, list[int]] = {}
        self.logits: shm.Segment | None = None
        self.lock = threading.Lock()

    def capabilities(self) -> list[str]:
        if self.mode == "backend_sampled_no_rng":
            return ["step", "greedy_steps", "sampled_steps"]
        return ["step", "greedy_steps"] if self.mode == "backend_greedy_overrun" else ["step"]

    @staticmethod
    def row(history: list[int]) -> np.ndarray:
        h = 0
        for t in history:
            h = (h * 31 + t + 7) % 1000003
        v = np.arange(N_VOCAB, dtype=np.float64)
        return np.sin(h * 0.001 + v * 1.7 + len(history)).astype(np.float32)

    def Init(self, request, context):  # noqa: N802
        return backend_pb2.InitResponse(device=backend_pb2.DeviceInfo(backend="cpu", name="toy"))

    def LoadModel(self, request, context):  # noqa: N802
        rows = request.max_logit_rows or request.max_sequences or 64
        self.logits = shm.Segment.create(rows * N_VOCAB * 4 * 2, "logits")
        self.seqs.clear()
        return backend_pb2.LoadModelResponse(
            model_id="toy",
            model=backend_pb2.ModelInfo(arch="toy", n_vocab=N_VOCAB, n_ctx=4096, format="toy"),
            logits_segment=self.logits.message(),
        )

    def Step(self, request, context):  # noqa: N802
        with self.lock:
            if self.delay:
                time.sleep(self.delay)
            resp = backend_pb2.StepResponse(step_id=request.step_id)
            offset = 0
            for item in request.batch:
                hist = self.seqs.setdefault(item.sequence_id, [])
                if item.HasField("n_past"):
                    if item.n_past > len(hist):
                        context.abort(
                            grpc.StatusCode.FAILED_PRECONDITION, f"n_past {item.n_past} > {len(hist)}"
                        )
                    del hist[item.n_past :]
                rows = []
                for t in item.tokens:
                    hist.append(t)
                    rows.append(self.row(hist))
                greedy = []
                if self.mode in ("backend_greedy_overrun", "backend_sampled_no_rng") and item.greedy_steps:
                    extra = self.mode == "backend_greedy_overrun"
                    for _ in range(item.greedy_steps + extra):
                        greedy.append(int(rows[-1].argmax()))
                        hist.append(greedy[-1])
                        rows.append(self.row(hist))
                arr = np.stack(rows if item.all_logits else rows[-1:])
                if self.mode == "backend_wrong_shape":
                    arr = np.concatenate([arr, arr[:1]])
                if self.mode == "backend_wrong_dtype":
                    arr = arr.astype(np.float16)
                self.logits.view(offset, arr.dtype, arr.shape)[...] = arr
                resp.outputs.add(
                    sequence_id=item.sequence_id,
                    logits=self.logits.handle(offset, arr.dtype, arr.shape),
                    n_past=len(hist),
                    greedy_tokens=greedy,
                )
                offset += -(-arr.nbytes // 64) * 64
            return resp

    def Cleanup(self, request, context):  # noqa: N802
        for s in request.sequence_ids:
            self.seqs.pop(s, None)
        return backend_pb2.CleanupResponse(live_sequences=len(self.seqs))


class HangingScheduler(SchedulerPlugin):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def Schedule(self, request, context):  # noqa: N802
        if self.mode == "scheduler_hang":
            _wait_forever()
        marker = os.environ.get("CRASH_MARKER", "")
        if self.mode.endswith("_once") and marker and not os.path.exists(marker):
            open(marker, "w").close()
            if self.mode == "scheduler_segv_once":
                ctypes.string_at(0)  # a real segmentation fault, as a buggy native kernel would cause
            os._exit(7)
        return scheduler_pb2.ScheduleResponse(step_id=request.step_id)


class _Info(common_pb2_grpc.PluginServicer):
    def __init__(self, name: str) -> None:
        self.name = name

    def Info(self, request, context):  # noqa: N802
        return common_pb2.InfoResponse(
            name=self.name,
            kind=common_pb2.PLUGIN_KIND_SCHEDULER,
            version=VERSION,
            api_version=handshake.API_VERSION,
            pid=os.getpid(),
        )


def raw_scheduler(mode: str, info_name: str) -> None:
    """A scheduler written without the SDK whose Schedule answers raw bytes (or a wrong identity)."""
    sock = os.path.join(tempfile.mkdtemp(prefix="tritium-bad-"), "plugin.sock")
    big = 20 * 1024 * 1024
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_send_message_length", 2 * big)])

    def schedule(request_bytes, context):  # noqa: ANN001, ANN202
        if mode == "scheduler_malformed":
            return b"\xff\xff\xff\xff\x0fnot a protobuf"
        if mode == "scheduler_oversized":
            return (
                scheduler_pb2.ScheduleResponse(
                    batch=[scheduler_pb2.Assignment(request_id=1)]
                ).SerializeToString()
                + b"\x1a"
                + _varint(big)
                + b"\x00" * big
            )
        return scheduler_pb2.ScheduleResponse().SerializeToString()

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tritium.plugin.v1.Scheduler", {"Schedule": grpc.unary_unary_rpc_method_handler(schedule)}
            )
        ]
    )
    common_pb2_grpc.add_PluginServicer_to_server(_Info(info_name), server)
    hs = health.HealthServicer()
    hs.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    print(handshake.format_handshake(sock), flush=True)
    _wait_forever()


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def main(mode: str) -> None:
    if mode == "garbage_handshake":
        print("Hello! I am a plugin, honest.", flush=True)
        _wait_forever()
    if mode == "no_handshake":
        _wait_forever()
    if mode == "exit_early":
        sys.stderr.write("cannot find my model weights\n")
        raise SystemExit(3)
    if mode == "wrong_api":
        print(handshake.format_handshake("/tmp/none.sock", api_version="tritium.plugin.v9"), flush=True)
        _wait_forever()
    if mode in ("scheduler_malformed", "scheduler_oversized"):
        raw_scheduler(mode, NAME)
    if mode == "wrong_identity":
        raw_scheduler(mode, "somebody-else")
    if mode in ("scheduler_hang", "scheduler_crash_once", "scheduler_segv_once"):
        serve(HangingScheduler(mode), "scheduler", NAME, VERSION)
    if mode in ("toy_backend", "backend_wrong_shape", "backend_wrong_dtype", "backend_greedy_overrun",
                "backend_sampled_no_rng"):
        serve(ToyBackend(mode), "backend", NAME, VERSION)
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1])
