"""Entry point of the `cpu` backend plugin: `python -m tritium.plugins.backend_cpu`.

The plugin process imports the engine library (`tritium.core`) for the model loader and the numba
kernels; the core never imports this plugin. The model is memory-mapped here, the KV cache lives
here, and one Step runs a whole batch; logits go back through one shared-memory segment set up by
LoadModel.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import Message
from tritium.protos.tritium.plugin.v1 import backend_pb2, common_pb2
from tritium.sdk import BackendPlugin, serve, shm
from tritium.sdk import config as config_mod

from . import per_op
from .device_probe import probe_cpu
from .model_runner import ModelRunner, StepError

NAME = "cpu"
VERSION = "0.1.0"
CAPABILITIES = [
    "step", "shm_logits", "greedy_steps", "sampled_steps", "per_op", "gguf", "hf", "i2_s", "tq1_0", "tq2_0"
]


class CpuBackend(BackendPlugin):
    """The engine's CPU runtime behind the backend contract."""

    def __init__(self) -> None:
        self._config: common_pb2.BackendConfig | None = None
        self._runner = ModelRunner()  # one Runtime call at a time
        self._buffers = per_op.Buffers()
        self._steps = 0
        self._step_us = 0

    def capabilities(self) -> list[str]:
        return list(CAPABILITIES)

    def configure(self, config: Message, validate_only: bool) -> Message:
        applied = config_mod.validate(config, backends=("cpu",))
        if applied.device_id != 0:
            raise config_mod.ConfigError(
                f"BackendConfig.device_id {applied.device_id}: the cpu backend has device 0 only"
            )
        if not validate_only:
            self._config = applied
        return applied

    def metrics(self) -> list[common_pb2.Metric]:
        return [
            common_pb2.Metric(name="steps_total", help="Step calls run", type="counter", value=self._steps),
            common_pb2.Metric(
                name="step_compute_seconds_total",
                help="Time spent computing steps",
                type="counter",
                value=self._step_us / 1e6,
            ),
            common_pb2.Metric(
                name="live_sequences",
                help="Sequences holding KV cache",
                type="gauge",
                value=len(self._runner.sequences),
            ),
        ]

    def on_shutdown(self) -> None:
        self._runner.close()
        self._buffers.close()

    # ---- device ---------------------------------------------------------------------------------
    def Probe(self, request, context):  # noqa: ANN001, ANN201, N802
        return backend_pb2.ProbeResponse(devices=[probe_cpu()], capabilities=CAPABILITIES)

    def Init(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            applied = self.configure(request.config, validate_only=False)
        except config_mod.ConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return backend_pb2.InitResponse(device=probe_cpu(), applied=applied)

    # ---- per-op path ----------------------------------------------------------------------------
    def Alloc(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            return self._buffers.alloc(request.dtype, list(request.shape))
        except shm.TensorHandleError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def Free(self, request, context):  # noqa: ANN001, ANN201, N802
        if not self._buffers.free(request.buffer_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no buffer {request.buffer_id}")
        return backend_pb2.FreeResponse()

    def MatMul(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            return per_op.matmul(self._buffers, request)
        except shm.TensorHandleError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def Activation(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            return per_op.activation(self._buffers, request)
        except shm.TensorHandleError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def Sync(self, request, context):  # noqa: ANN001, ANN201, N802
        return backend_pb2.SyncResponse()  # every CPU op above is synchronous

    # ---- model path -----------------------------------------------------------------------------
    def LoadModel(self, request, context):  # noqa: ANN001, ANN201, N802
        stream_count = self._config.stream_count if self._config and self._config.stream_count > 1 else None
        try:
            return self._runner.run(self._runner.load, request, stream_count)
        except StepError as exc:
            context.abort(exc.code, str(exc))

    def Step(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            resp = self._runner.run(self._runner.step, request)
        except StepError as exc:
            context.abort(exc.code, str(exc))
        self._steps += 1
        self._step_us += resp.compute_us
        return resp

    def Cleanup(self, request, context):  # noqa: ANN001, ANN201, N802
        if request.all:
            self._runner.run(self._runner.unload)
            self._buffers.close()
            self._buffers = per_op.Buffers()
            return backend_pb2.CleanupResponse(live_sequences=0)
        left = self._runner.run(self._runner.cleanup, list(request.sequence_ids))
        return backend_pb2.CleanupResponse(live_sequences=left)


if __name__ == "__main__":
    # One gRPC worker thread: every Runtime call on the same OS thread (see model_runner.py). Calls
    # queue behind a running Step, which is what the one-step-at-a-time Runtime needs anyway.
    serve(CpuBackend(), "backend", NAME, VERSION, max_workers=1)
