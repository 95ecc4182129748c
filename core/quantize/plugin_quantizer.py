"""Drive a quantizer plugin process (tritium.plugin.v1.Quantizer) for `quantize_model`.

The plugin is found by discovery (builtin, system, user, entry points, $TRITIUM_PLUGIN_PATH), verified
and launched by the supervisor like any plugin. Tensors go one at a time through one Quantize stream:
the core writes the float32 source into a shared-memory segment it owns (grown when a larger tensor
comes), sends its handle, and copies the payload out of the plugin's segment before sending the next.
If the plugin dies mid-run, the supervisor restarts it and the tensor in flight is sent again.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator

import grpc
import numpy as np
from tritium.plugin_host.discovery import discover
from tritium.plugin_host.errors import PluginError
from tritium.plugin_host.supervisor import Instance, Supervisor
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc, quantizer_pb2, quantizer_pb2_grpc
from tritium.sdk import shm

from .errors import QuantizeError
from .options import GGML_TYPE_OF, QuantizeOptions
from .quantizer_api import QuantizedBytes, Verdict

DEFAULT_PLUGIN = "ternary"
CALL_TIMEOUT_S = 30.0
TENSOR_TIMEOUT_S = 600.0


def _type_name(qt: int) -> str:
    if qt not in GGML_TYPE_OF:
        raise QuantizeError(f"the plugin answered quant_type {qt}, which has no GGUF tensor type here")
    return GGML_TYPE_OF[qt]


class PluginQuantizer:
    """A quantizer plugin under a supervisor. Use as a context manager (it stops what it started)."""

    def __init__(self, name: str = DEFAULT_PLUGIN, *, supervisor: Supervisor | None = None) -> None:
        self.name = name
        self._own = supervisor is None
        self._sup = supervisor or Supervisor()
        self._options: QuantizeOptions | None = None
        try:
            if self._own:
                self._sup.register_discovered(discover())
            mp = self._sup.get(name)
            if mp.manifest.kind != "quantizer":
                raise QuantizeError(f"plugin {name!r} is a {mp.manifest.kind} plugin, not a quantizer")
            self._sup.start(name)
        except PluginError as exc:
            self.close()
            raise QuantizeError(f"cannot start quantizer plugin {name!r}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PluginQuantizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._sup.close()

    def _call(self, method: str, fn):  # noqa: ANN001, ANN202
        try:
            return self._sup.call(self.name, fn, method=method)
        except PluginError as exc:
            raise QuantizeError(f"quantizer plugin {self.name!r}: {exc.reason}") from None

    @property
    def pid(self) -> int:
        return self._sup.instance(self.name).pid

    def configure(self, options: QuantizeOptions) -> list[str]:
        """Configure (validate + apply); QuantizeError carries the plugin's reason for a refusal."""
        req = common_pb2.ConfigureRequest(quantizer=options.message())
        resp = self._call("Configure", lambda inst: inst.stub(common_pb2_grpc.PluginStub).Configure(
            req, timeout=CALL_TIMEOUT_S))
        self._options = options
        return list(resp.warnings)

    def can_quantize(self, name: str, shape: tuple[int, ...]) -> Verdict:
        req = quantizer_pb2.CanQuantizeRequest(tensor_name=name, dtype=common_pb2.DTYPE_F32,
                                               shape=list(shape))
        resp = self._call("CanQuantize", lambda inst: inst.stub(quantizer_pb2_grpc.QuantizerStub).CanQuantize(
            req, timeout=CALL_TIMEOUT_S))
        return Verdict(resp.ok, _type_name(resp.quant_type) if resp.ok else "", resp.reason)

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        s = _Session(self)
        try:
            yield s
        finally:
            s.close()


class _Stream:
    """One open Quantize stream: requests fed from a queue, answers read in order."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self._q: queue.Queue = queue.Queue()
        stub = inst.stub(quantizer_pb2_grpc.QuantizerStub)
        self._responses = stub.Quantize(iter(self._q.get, None), timeout=None)

    def send(self, req: quantizer_pb2.QuantizeRequest) -> quantizer_pb2.QuantizeResponse:
        self._q.put(req)
        return next(self._responses)

    def close(self) -> None:
        self._q.put(None)
        with contextlib.suppress(grpc.RpcError, StopIteration):
            for _ in self._responses:
                pass


class _Session:
    def __init__(self, owner: PluginQuantizer) -> None:
        self._owner = owner
        self._segment: shm.Segment | None = None
        self._stream: _Stream | None = None
        self._reader = shm.SegmentCache(readonly=True)

    def _input(self, x: np.ndarray) -> common_pb2.TensorHandle:
        if self._segment is None or self._segment.size < x.nbytes:
            if self._segment is not None:
                self._segment.close()
            self._segment = shm.Segment.create(max(x.nbytes, 1 << 20), tag="quant-in")
        self._segment.view(0, np.float32, x.shape)[...] = x
        return self._segment.handle(0, np.float32, x.shape)

    def quantize(self, name: str, x: np.ndarray) -> QuantizedBytes:
        x = np.asarray(x, dtype=np.float32)
        req = quantizer_pb2.QuantizeRequest(name=name, input=self._input(x))
        for attempt in range(2):
            if self._stream is None:
                self._stream = _Stream(self._owner._sup.instance(self._owner.name))
            try:
                resp = self._stream.send(req)
                break
            except grpc.RpcError as exc:
                dead = self._stream.inst.process.process.poll() is not None
                self._stream = None
                self._reader.close()
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT or not dead or attempt == 1:
                    raise QuantizeError(f"quantizer plugin {self._owner.name!r}, tensor '{name}': "
                                        f"{exc.code().name}: {exc.details()}") from None
            except StopIteration:
                raise QuantizeError(f"quantizer plugin {self._owner.name!r} closed the stream at tensor "
                                    f"'{name}'") from None
        t = resp.tensor
        if t.name != name or tuple(t.shape) != tuple(x.shape):
            raise QuantizeError(f"quantizer plugin {self._owner.name!r} answered tensor {t.name!r} "
                                f"{list(t.shape)} for '{name}' {list(x.shape)}")
        try:
            data = shm.read_tensor(t.data, self._reader, dtype=common_pb2.DTYPE_U8, shape=(None,),
                                   what=f"Quantize payload of '{name}'")
        except shm.TensorHandleError as exc:
            raise QuantizeError(f"quantizer plugin {self._owner.name!r}: {exc}") from None
        return QuantizedBytes(_type_name(t.quant_type), data, float(resp.mse))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._reader.close()
        if self._segment is not None:
            self._segment.close()
