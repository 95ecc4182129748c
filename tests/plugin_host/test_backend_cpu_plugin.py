"""The builtin cpu backend plugin as a process: device probing, configuration, the per-op conformance
calls through shared memory, and its errors. (Model steps: tests/e2e/test_plugin_backend_e2e.py.)"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritium.plugin_host.discovery import BUILTIN_DIR, discover
from tritium.plugin_host.supervisor import Supervisor
from tritium.plugins.backend_cpu.per_op import gelu, relu2, silu
from tritium.protos.tritium.plugin.v1 import backend_pb2, backend_pb2_grpc, common_pb2
from tritium.sdk import shm


@pytest.fixture(scope="module")
def backend():
    sup = Supervisor()
    sup.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    inst = sup.start("cpu")
    yield inst.stub(backend_pb2_grpc.BackendStub)
    sup.close()


def _abort(call, code, needle):
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code and needle in err.value.details()


def test_probe_and_init(backend):
    probe = backend.Probe(backend_pb2.ProbeRequest(), timeout=10)
    cpu = probe.devices[0]
    assert cpu.backend == "cpu" and cpu.device_id == 0 and cpu.compute_units >= 1 and cpu.memory_total > 0
    assert "step" in probe.capabilities
    init = backend.Init(backend_pb2.InitRequest(config=common_pb2.BackendConfig(stream_count=2)), timeout=10)
    assert init.applied.backend == "auto" and init.applied.stream_count == 2 and init.applied.tensor_cores
    _abort(
        lambda: backend.Init(
            backend_pb2.InitRequest(config=common_pb2.BackendConfig(backend="cuda")), timeout=10
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "BackendConfig.backend 'cuda' is not one of ['auto', 'cpu']",
    )
    _abort(
        lambda: backend.Init(
            backend_pb2.InitRequest(config=common_pb2.BackendConfig(device_id=3)), timeout=10
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "device 0 only",
    )


def test_matmul_through_shared_memory(backend):
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((4, 8)).astype(np.float32)
    w_np = rng.standard_normal((3, 8)).astype(np.float32)  # weight layout: [N, K]
    a = backend.Alloc(backend_pb2.AllocRequest(dtype=common_pb2.DTYPE_F32, shape=[4, 8]), timeout=10)
    cache = shm.SegmentCache(readonly=False)
    cache.get(a.handle.segment).view(a.handle.offset, np.float32, (4, 8))[...] = a_np
    with _HostArena() as arena:
        w_view, w_handle = arena.alloc(np.float32, (3, 8))
        w_view[...] = w_np
        out = backend.MatMul(
            backend_pb2.MatMulRequest(a=a.handle, b=w_handle, transpose_b=True), timeout=10
        ).out
        got = shm.read_tensor(out, cache, dtype=common_pb2.DTYPE_F32, shape=(4, 3))
        np.testing.assert_allclose(got, a_np @ w_np.T, rtol=1e-5, atol=1e-5)
        _abort(
            lambda: backend.MatMul(backend_pb2.MatMulRequest(a=a.handle, b=w_handle), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MatMul inner dimensions differ",
        )
        # Into a caller-given destination of the wrong shape: refused, naming the shape.
        bad_out = a.handle
        _abort(
            lambda: backend.MatMul(
                backend_pb2.MatMulRequest(a=a.handle, b=w_handle, transpose_b=True, out=bad_out), timeout=10
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected shape [4, 3], found [4, 8]",
        )
    backend.Sync(backend_pb2.SyncRequest(), timeout=10)
    backend.Free(backend_pb2.FreeRequest(buffer_id=a.buffer_id), timeout=10)
    _abort(
        lambda: backend.Free(backend_pb2.FreeRequest(buffer_id=a.buffer_id), timeout=10),
        grpc.StatusCode.NOT_FOUND,
        f"no buffer {a.buffer_id}",
    )
    cache.close()


class _HostArena(shm.Arena):
    def __init__(self):
        super().__init__(4096, "host")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize(
    ("kind", "fn"),
    [
        (backend_pb2.ACTIVATION_KIND_SILU, silu),
        (backend_pb2.ACTIVATION_KIND_RELU2, relu2),
        (backend_pb2.ACTIVATION_KIND_GELU, gelu),
    ],
)
def test_activation_inline(backend, kind, fn):
    x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(3, 4)
    out = backend.Activation(
        backend_pb2.ActivationRequest(kind=kind, input=shm.inline_handle(x)), timeout=10
    ).out
    got = shm.read_tensor(out, dtype=common_pb2.DTYPE_F32, shape=(3, 4))
    np.testing.assert_allclose(got, fn(x), rtol=1e-6)
    assert got[0, 0] != got[2, 3]


def test_step_before_load_model_is_refused(backend):
    _abort(
        lambda: backend.Step(
            backend_pb2.StepRequest(batch=[backend_pb2.SequenceInput(sequence_id=1, tokens=[1])]), timeout=10
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "Step before LoadModel",
    )
    _abort(
        lambda: backend.LoadModel(backend_pb2.LoadModelRequest(path="/nonexistent/model.gguf"), timeout=60),
        grpc.StatusCode.INVALID_ARGUMENT,
        "/nonexistent/model.gguf",
    )
