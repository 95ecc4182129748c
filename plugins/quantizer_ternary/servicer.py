"""The `ternary` quantizer's gRPC servicer: Configure, CanQuantize, Quantize (streamed), Dequantize.

Bulk tensors cross in shared memory: the source arrives as a handle into the core's segment (read in
place), the payload goes back in a segment this process owns (reused across tensors, grown on demand).
"""

from __future__ import annotations

import threading

import grpc
import numpy as np
from google.protobuf.message import Message
from tritium.protos.tritium.plugin.v1 import common_pb2, quantizer_pb2
from tritium.sdk import QuantizerPlugin, shm
from tritium.sdk import config as config_mod
from tritium.sdk.config import ConfigError

from .decode import dequantize_payload
from .engine import OptionError, Options, check_options, payload_nbytes, quantize_tensor, target_type

TYPE_NAME = {
    common_pb2.QUANT_TYPE_I2_S: "I2_S",
    common_pb2.QUANT_TYPE_TL1: "TL1",
    common_pb2.QUANT_TYPE_TQ1_0: "TQ1_0",
    common_pb2.QUANT_TYPE_TQ2_0: "TQ2_0",
    common_pb2.QUANT_TYPE_F16: "F16",
    common_pb2.QUANT_TYPE_Q8_0: "Q8_0",
}
TYPE_ENUM = {v: k for k, v in TYPE_NAME.items()}
_FLOAT_INPUTS = (common_pb2.DTYPE_F32, common_pb2.DTYPE_F16, common_pb2.DTYPE_BF16)


def options_of(msg: common_pb2.QuantizerConfig) -> Options:
    """Effective Options of a QuantizerConfig (unset fields take the seed defaults)."""
    cfg = config_mod.with_defaults(msg)
    if cfg.quant_type not in TYPE_NAME or cfg.quant_type == common_pb2.QUANT_TYPE_Q8_0:
        label = (
            common_pb2.QuantType.Name(cfg.quant_type)
            if cfg.quant_type in common_pb2.QuantType.values()
            else cfg.quant_type
        )
        raise OptionError(
            f"quant_type {label} is not produced by the ternary plugin (it makes I2_S, TL1, "
            "TQ1_0, TQ2_0, F16)"
        )
    return Options(TYPE_NAME[cfg.quant_type], cfg.group_size, cfg.sym, cfg.per_channel, cfg.quant_embd)


def _merge(
    base: common_pb2.QuantizerConfig, override: common_pb2.QuantizerConfig
) -> common_pb2.QuantizerConfig:
    out = common_pb2.QuantizerConfig()
    out.CopyFrom(base)
    if override.quant_type:
        out.quant_type = override.quant_type
    for f in ("group_size", "sym", "per_channel", "quant_embd"):
        if override.HasField(f):
            setattr(out, f, getattr(override, f))
    return out


class TernaryQuantizer(QuantizerPlugin):
    """I2_S, TL1, TQ1_0, TQ2_0 (and F16, Q8_0 embeddings) from float or ternary tensors."""

    def __init__(self) -> None:
        self._config = config_mod.with_defaults(common_pb2.QuantizerConfig())
        self._lock = threading.Lock()
        self._tensors = 0
        self._bytes_in = 0

    def capabilities(self) -> list[str]:
        return ["shm", "stream", "quant:i2_s", "quant:tl1", "quant:tq1_0", "quant:tq2_0", "quant:f16"]

    def configure(self, config: Message, validate_only: bool) -> Message:
        applied = config_mod.validate(config)
        try:
            check_options(options_of(applied))
        except OptionError as exc:
            raise ConfigError(str(exc)) from None
        if not validate_only:
            with self._lock:
                self._config = applied
        return applied

    def config_warnings(self, applied: common_pb2.QuantizerConfig) -> list[str]:
        """Non-fatal remarks on an accepted config (e.g. group_size has no effect on ternary values), for
        ConfigureResponse.warnings."""
        return check_options(options_of(applied))

    def metrics(self) -> list[common_pb2.Metric]:
        return [
            common_pb2.Metric(
                name="tensors_quantized_total", help="tensors quantized", type="counter", value=self._tensors
            ),
            common_pb2.Metric(
                name="source_bytes_total",
                help="float source bytes read",
                type="counter",
                value=self._bytes_in,
            ),
        ]

    def _options(self, override: common_pb2.QuantizerConfig | None) -> Options:
        cfg = self._config if override is None else _merge(self._config, override)
        o = options_of(cfg)
        check_options(o)
        return o

    def CanQuantize(self, request, context):  # noqa: ANN001, ANN201, N802
        try:
            o = self._options(request.config if request.HasField("config") else None)
        except OptionError as exc:
            return quantizer_pb2.CanQuantizeResponse(ok=False, reason=str(exc))
        want, why = target_type(request.tensor_name, tuple(request.shape), o)
        if want is None:
            return quantizer_pb2.CanQuantizeResponse(ok=False, reason=why)
        return quantizer_pb2.CanQuantizeResponse(ok=True, quant_type=TYPE_ENUM[want])

    def Quantize(self, request_iterator, context):  # noqa: ANN001, ANN201, N802
        segments = shm.SegmentCache(readonly=True)
        out: shm.Segment | None = None
        try:
            for req in request_iterator:
                try:
                    o = self._options(req.config if req.HasField("config") else None)
                    if req.input.dtype not in _FLOAT_INPUTS:
                        raise ValueError(f"expected a float input tensor, found {req.input.dtype}")
                    x = shm.read_tensor(req.input, segments, what=f"input of {req.name!r}", copy=False)
                    if req.input.dtype == common_pb2.DTYPE_BF16:
                        x = (x.astype(np.uint32) << 16).view(np.float32)
                    want, why = target_type(req.name, tuple(req.input.shape), o)
                    if want is None:
                        raise ValueError(f"{req.name}: not quantized by this plugin: {why}")
                    # the payload is written straight into this process's output segment
                    n = payload_nbytes(want, tuple(req.input.shape))
                    if out is None or out.size < n:
                        if out is not None:
                            out.close()
                        out = shm.Segment.create(max(n, 1 << 20), tag="quant-out")
                    q = quantize_tensor(req.name, np.asarray(x, dtype=np.float32), o,
                                        out=out.view(0, np.uint8, (n,)))
                except (ValueError, OptionError, shm.TensorHandleError) as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                with self._lock:
                    self._tensors += 1
                    self._bytes_in += req.input.nbytes
                yield quantizer_pb2.QuantizeResponse(
                    tensor=quantizer_pb2.QuantizedTensor(
                        name=req.name,
                        quant_type=TYPE_ENUM[q.type_name],
                        shape=list(req.input.shape),
                        data=out.handle(0, np.uint8, (q.data.nbytes,)),
                    ),
                    mse=q.mse,
                )
        finally:
            segments.close()
            if out is not None:
                out.close()

    def Dequantize(self, request, context):  # noqa: ANN001, ANN201, N802
        t = request.tensor
        name = TYPE_NAME.get(t.quant_type)
        try:
            if name is None:
                raise ValueError(f"cannot dequantize quant_type {t.quant_type}")
            payload = shm.read_tensor(t.data, what="payload")
            values = dequantize_payload(name, payload.reshape(-1), tuple(t.shape))
        except (ValueError, shm.TensorHandleError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.out.segment:
            shm.check_handle(request.out, dtype=common_pb2.DTYPE_F32, shape=tuple(t.shape), what="out")
            with shm.Segment.attach(request.out.segment) as seg:
                seg.view(request.out.offset, np.float32, tuple(t.shape))[...] = values
            return quantizer_pb2.DequantizeResponse(out=request.out)
        return quantizer_pb2.DequantizeResponse(out=shm.inline_handle(values))
