"""Drive a quantizer plugin process (tritium.plugin.v1.Quantizer) for `quantize_model`.

The plugin is found by discovery (builtin, system, user, entry points, $TRITIUM_PLUGIN_PATH), verified
and launched by the supervisor like any plugin. Tensors go one at a time through one Quantize stream:
the core writes the float32 source into a shared-memory segment it owns (grown when a larger tensor
comes; `_Session.buffer` lets the source be read straight into it), sends its handle, and copies the
payload out of the plugin's segment before sending the next.
If the plugin dies mid-run (a crash, SIGKILL, the OOM killer), the supervisor restarts it; the session
configures the new process with the run's options, opens a new stream and sends the tensor in flight
again (its source is still in the core's segment), so the output is the same file an undisturbed run
writes. A second death on the same tensor ends the run with QuantizeError.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator

import grpc
import numpy as np
from tritium.plugin_host.confined import confined_supervisor
from tritium.plugin_host.discovery import discover
from tritium.plugin_host.errors import PluginError
from tritium.plugin_host.shm_sharing import share_segment
from tritium.plugin_host.supervisor import Instance, Supervisor
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc, quantizer_pb2, quantizer_pb2_grpc
from tritium.sdk import shm

from .errors import QuantizeError
from .options import GGML_TYPE_OF, QuantizeOptions
from .quantizer_api import QuantizedBytes, Verdict

DEFAULT_PLUGIN = "ternary"
CALL_TIMEOUT_S = 30.0
TENSOR_TIMEOUT_S = 600.0
# gRPC sees the socket close a moment before the kernel reports the process's exit.
DEATH_WAIT_S = 2.0


def _type_name(qt: int) -> str:
    if qt not in GGML_TYPE_OF:
        raise QuantizeError(f"the plugin answered quant_type {qt}, which has no GGUF tensor type here")
    return GGML_TYPE_OF[qt]


class PluginQuantizer:
    """A quantizer plugin under a supervisor. Use as a context manager (it stops what it started)."""

    def __init__(self, name: str = DEFAULT_PLUGIN, *, supervisor: Supervisor | None = None) -> None:
        self.name = name
        self._own = supervisor is None
        self._sup = supervisor or confined_supervisor()  # signed + sandboxed, like every plugin
        self._options: QuantizeOptions | None = None
        self._configured: str = ""  # key of the instance that holds self._options
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

        def configure_on(inst: Instance) -> common_pb2.ConfigureResponse:
            resp = inst.stub(common_pb2_grpc.PluginStub).Configure(req, timeout=CALL_TIMEOUT_S)
            self._configured = inst.key
            return resp

        resp = self._call("Configure", configure_on)
        self._options = options
        return list(resp.warnings)

    def _ready_instance(self) -> Instance:
        """The current instance, configured with the run's options (a restarted process starts with the
        plugin's defaults, so it is configured again before it gets a tensor)."""
        try:
            inst = self._sup.instance(self.name)
        except PluginError as exc:
            raise QuantizeError(f"quantizer plugin {self.name!r}: {exc.reason}") from None
        if self._options is not None and inst.key != self._configured:
            self.configure(self._options)
            inst = self._sup.instance(self.name)
        return inst

    @property
    def restarts(self) -> int:
        """How many times the supervisor restarted the plugin."""
        return self._sup.get(self.name).restarts

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


def _died(inst: Instance, wait_s: float = DEATH_WAIT_S) -> bool:
    """Whether the instance's process has exited (waiting up to wait_s for the kernel to say so)."""
    end = time.monotonic() + wait_s
    while True:
        if inst.dead or inst.process.process.poll() is not None:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)


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

    def buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A writable float32 array of `shape` in the session's shared-memory input segment: a tensor
        read into it (ModelSource.read(name, out=...)) is sent to the plugin without a copy. Valid until
        the next call of buffer() or quantize() with another array."""
        nbytes = 4 * int(np.prod(shape, dtype=np.int64))
        if self._segment is None or self._segment.size < nbytes:
            if self._segment is not None:
                self._segment.close()
            self._segment = shm.Segment.create(max(nbytes, 1 << 20), tag="quant-in")
            # A root core's plugin runs as its own uid: the segment must be its to read.
            share_segment(self._segment.path, self._owner._ready_instance().pid)
        return self._segment.view(0, np.float32, tuple(shape))

    def _input(self, x: np.ndarray) -> common_pb2.TensorHandle:
        seg = self.buffer(x.shape)
        if not (x.flags.c_contiguous and x.ctypes.data == seg.ctypes.data):  # not already in place
            seg[...] = x
        return self._segment.handle(0, np.float32, x.shape)

    def quantize(self, name: str, x: np.ndarray) -> QuantizedBytes:
        x = np.asarray(x, dtype=np.float32)
        req = quantizer_pb2.QuantizeRequest(name=name, input=self._input(x))
        for attempt in range(2):
            if self._stream is None:
                self._stream = _Stream(self._owner._ready_instance())
            try:
                resp = self._stream.send(req)
                break
            except grpc.RpcError as exc:
                dead = _died(self._stream.inst)
                self._stream = None
                self._reader.close()  # the dead process's payload segment is gone
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
