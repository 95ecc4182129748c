"""The per-op calls of the backend contract (Alloc, Free, MatMul, Activation) in numpy.

For conformance and tests only: serving uses Step. Buffers are shared-memory segments owned by the
plugin; operands may also live in segments the host created (attached read-only).
"""

from __future__ import annotations

import numpy as np
from tritium.protos.tritium.plugin.v1 import backend_pb2, common_pb2
from tritium.sdk import shm


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x)."""
    return x / (1.0 + np.exp(-x))


def relu2(x: np.ndarray) -> np.ndarray:
    """max(x, 0)^2."""
    return np.square(np.maximum(x, 0.0))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    backend_pb2.ACTIVATION_KIND_SILU: silu,
    backend_pb2.ACTIVATION_KIND_RELU2: relu2,
    backend_pb2.ACTIVATION_KIND_GELU: gelu,
}


class Buffers:
    """Buffers allocated by Alloc, plus the host's segments attached for reading and writing."""

    def __init__(self) -> None:
        self._next = 1
        self._owned: dict[int, shm.Segment] = {}
        self._by_name: dict[str, shm.Segment] = {}
        self._attached = shm.SegmentCache(readonly=False)

    def alloc(self, dtype: int, shape: list[int]) -> backend_pb2.AllocResponse:
        """A new zeroed buffer; ValueError for a bad shape or dtype."""
        dt = shm.numpy_dtype(dtype)
        if not shape or any(d <= 0 for d in shape):
            raise shm.TensorHandleError(f"Alloc shape must have dimensions > 0, found {list(shape)}")
        nbytes = int(np.prod(shape)) * dt.itemsize
        seg = shm.Segment.create(nbytes, "buf")
        buf_id = self._next
        self._next += 1
        self._owned[buf_id] = seg
        self._by_name[seg.name] = seg
        return backend_pb2.AllocResponse(
            buffer_id=buf_id, handle=seg.handle(0, dt, tuple(shape), pdtype=dtype)
        )

    def free(self, buffer_id: int) -> bool:
        """Free one buffer; False if the id is unknown."""
        seg = self._owned.pop(buffer_id, None)
        if seg is None:
            return False
        self._by_name.pop(seg.name, None)
        seg.close()
        return True

    def _segment(self, name: str) -> shm.Segment:
        return self._by_name.get(name) or self._attached.get(name)

    def read(self, handle: common_pb2.TensorHandle, what: str) -> np.ndarray:
        """The array behind a handle (a view for segments)."""
        if not handle.segment:
            return shm.read_tensor(handle, what=what)
        shm.check_handle(handle, what=what)
        return self._segment(handle.segment).view(
            handle.offset, shm.numpy_dtype(handle.dtype), tuple(handle.shape)
        )

    def write(self, out: common_pb2.TensorHandle, value: np.ndarray, what: str) -> common_pb2.TensorHandle:
        """Store `value` where `out` says (checked against its shape and dtype), or in a new buffer."""
        if not out.segment:
            resp = self.alloc(shm.proto_dtype(value.dtype), list(value.shape))
            out = resp.handle
        else:
            shm.check_handle(out, dtype=shm.proto_dtype(value.dtype), shape=value.shape, what=what)
        self._segment(out.segment).view(out.offset, value.dtype, value.shape)[...] = value
        return out

    def close(self) -> None:
        """Free everything."""
        for buf_id in list(self._owned):
            self.free(buf_id)
        self._attached.close()


def matmul(buffers: Buffers, req: backend_pb2.MatMulRequest) -> backend_pb2.MatMulResponse:
    """out = a @ b (or a @ b^T) in float32."""
    a = buffers.read(req.a, "MatMul.a")
    b = buffers.read(req.b, "MatMul.b")
    if a.ndim != 2 or b.ndim != 2:
        raise shm.TensorHandleError(f"MatMul operands must be 2-D, found {a.shape} and {b.shape}")
    bt = b.T if req.transpose_b else b
    if a.shape[1] != bt.shape[0]:
        raise shm.TensorHandleError(
            f"MatMul inner dimensions differ: a is {list(a.shape)}, "
            f"b{'^T' if req.transpose_b else ''} is {list(bt.shape)}"
        )
    out = np.matmul(a.astype(np.float32, copy=False), bt.astype(np.float32, copy=False))
    return backend_pb2.MatMulResponse(out=buffers.write(req.out, out, "MatMul.out"))


def activation(buffers: Buffers, req: backend_pb2.ActivationRequest) -> backend_pb2.ActivationResponse:
    """out = f(input), elementwise, in the input's float dtype."""
    fn = ACTIVATIONS.get(req.kind)
    if fn is None:
        raise shm.TensorHandleError(f"unsupported activation kind {req.kind}")
    x = buffers.read(req.input, "Activation.input")
    y = fn(x.astype(np.float32)).astype(x.dtype, copy=False)
    return backend_pb2.ActivationResponse(out=buffers.write(req.out, y, "Activation.out"))
