"""The fast lane (shared-memory slot + doorbell pipes) for the hot-path calls: the same answers as
gRPC, the same failure semantics (plugin death -> UNAVAILABLE and a retry on the restarted instance,
hang -> deadline, bad replies -> protocol errors), negotiation, the switch that turns it off, and the
sandbox letting it through."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest
from tritium.plugin_host.client import SchedulerClient
from tritium.plugin_host.discovery import BUILTIN_DIR, discover
from tritium.plugin_host.fastlane import FastLaneError, HostLane, enabled_by_env
from tritium.plugin_host.sandbox.doctor import kernel_features
from tritium.plugin_host.sandbox.hook import Sandbox, SandboxConfig
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor
from tritium.protos.tritium.plugin.v1 import scheduler_pb2, scheduler_pb2_grpc
from tritium.sdk import fastlane as wire

from tests.process_control import freeze

FAST = RestartPolicy(
    max_crashes=20, window_s=60, backoff_initial_s=0.01, backoff_max_s=0.05, call_attempts=3, ready_wait_s=20
)


def _snapshot(step_id: int = 9) -> scheduler_pb2.ScheduleRequest:
    return scheduler_pb2.ScheduleRequest(
        step_id=step_id,
        devices=[scheduler_pb2.DeviceLoad(device_id=0, capacity=64, available=True)],
        queue=[
            scheduler_pb2.QueuedRequest(
                request_id=i,
                prompt_tokens=20,
                processed_tokens=20 if i < 3 else 0,
                running=i < 3,
                arrival_us=i,
            )
            for i in range(6)
        ],
    )


@pytest.fixture(scope="module")
def sup():
    s = Supervisor(policy=FAST)
    s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    s.start("basic")
    yield s
    s.close()


def test_lane_is_negotiated_and_answers_like_grpc(sup):
    inst = sup.instance("basic")
    lane = inst.process.fastlane
    assert lane is not None and lane.methods == {"Schedule"}
    req = _snapshot()
    by_lane = lane.call("Schedule", req, scheduler_pb2.ScheduleResponse, 5.0)
    by_grpc = inst.stub(scheduler_pb2_grpc.SchedulerStub).Schedule(req, timeout=5)
    assert by_lane is not None and by_lane.step_id == 9 and len(by_lane.batch) > 0
    assert by_lane == by_grpc and lane.calls >= 1
    # Through the client both ways, too.
    grpc_only = SchedulerClient(sup, "basic", fastlane=False)
    assert SchedulerClient(sup, "basic").schedule(req) == grpc_only.schedule(req)
    # A method the lane does not carry goes by gRPC (call() says None).
    assert lane.call("Step", req, scheduler_pb2.ScheduleResponse, 5.0) is None


def test_sigkill_mid_call_is_unavailable_and_retried_on_the_restarted_instance(sup, monkeypatch):
    mp = sup.get("basic")
    first = sup.instance("basic")
    restarts = mp.restarts
    real_answer = HostLane._answer
    killed = []

    def kill_then_answer(self, method, response_cls, timeout):  # noqa: ANN001
        if not killed:  # the request is in the plugin's hands: kill it before it can answer
            killed.append(first.pid)
            os.kill(first.pid, signal.SIGKILL)
        return real_answer(self, method, response_cls, timeout)

    monkeypatch.setattr(HostLane, "_answer", kill_then_answer)
    freeze(first.pid)  # it cannot answer before it is killed
    resp = SchedulerClient(sup, "basic").schedule(_snapshot(11))
    assert resp.step_id == 11 and killed == [first.pid]
    assert mp.restarts == restarts + 1 and mp.state == PluginState.READY
    assert sup.instance("basic").pid != first.pid and sup.instance("basic").process.fastlane is not None
    assert first.process.fastlane.closed  # EOF closed the dead instance's lane


def test_dead_plugin_reads_as_unavailable(sup):
    inst = sup.instance("basic")
    lane = inst.process.fastlane
    freeze(inst.pid)  # holds the call, then dies under it
    threading.Timer(0.2, os.kill, (inst.pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(FastLaneError) as err:
        lane.call("Schedule", _snapshot(), scheduler_pb2.ScheduleResponse, 30.0)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - t0 < 5
    assert lane.closed and lane.call("Schedule", _snapshot(), scheduler_pb2.ScheduleResponse, 1.0) is None
    assert sup.wait_for("basic", lambda p: p.state == PluginState.READY and p.instance is not inst, 10)


def test_hang_hits_the_deadline_and_the_plugin_is_restarted(sup):
    inst = sup.instance("basic")
    freeze(inst.pid)  # a hung plugin: alive, silent
    t0 = time.monotonic()
    # The stopped one is killed at its deadline, the restarted one answers (its first call within the
    # same deadline: 3 s leaves room for a machine busy with other jobs).
    resp = SchedulerClient(sup, "basic", timeout_s=3.0).schedule(_snapshot(12))
    assert resp.step_id == 12 and 3.0 <= time.monotonic() - t0 < 30
    assert "did not answer within its deadline" in inst.fault_reason
    assert sup.instance("basic").pid != inst.pid


def test_disabled_by_launch_option_and_environment(monkeypatch):
    with Supervisor(policy=FAST, launch_options={"fastlane": False}) as s:
        s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
        inst = s.start("basic")
        assert inst.process.fastlane is None
        assert SchedulerClient(s, "basic").schedule(_snapshot(3)).step_id == 3  # by gRPC
    assert enabled_by_env({}) and not enabled_by_env({"TRITIUM_FASTLANE": "0"})


# ---- bad replies, with an in-process plugin side --------------------------------------------------
class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802
        return self.data


def _lane_with(fn, slot_bytes: int = 1 << 16) -> tuple[HostLane, wire.FastLaneServer]:
    lane = HostLane(slot_bytes=slot_bytes)
    fd_in, fd_out, slot_fd = (os.dup(fd) for fd in lane.child_fds())
    lane.after_spawn()
    server = wire.FastLaneServer(
        fd_in, fd_out, slot_fd, slot_bytes, {wire.METHOD_IDS["Schedule"]: (scheduler_pb2.ScheduleRequest, fn)}
    )
    server.start()
    lane.methods = frozenset({"Schedule"})
    return lane, server


def _close(lane, server) -> None:
    lane.close()
    server.join(5)  # it sees EOF (or EPIPE) and closes its fds itself


@pytest.mark.parametrize(
    ("answer", "code", "needle"),
    [
        (lambda req, ctx: _Raw(b"\xff\xff\xff"), grpc.StatusCode.INTERNAL, "deserializ"),
        (lambda req, ctx: _Raw(b"x" * (1 << 17)), grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger"),
        (
            lambda req, ctx: ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad snapshot"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad snapshot",
        ),
        (lambda req, ctx: 1 / 0, grpc.StatusCode.UNKNOWN, "Exception calling application"),
        (
            scheduler_pb2_grpc.SchedulerServicer().Schedule,  # an author who did not implement it
            grpc.StatusCode.UNIMPLEMENTED,
            "Method not implemented!",
        ),
    ],
)
def test_bad_replies_are_the_grpc_errors_of_the_same_fault(answer, code, needle):
    lane, server = _lane_with(answer)
    try:
        with pytest.raises(FastLaneError) as err:
            lane.call("Schedule", _snapshot(), scheduler_pb2.ScheduleResponse, 5.0)
        assert err.value.code() == code and needle in err.value.details()
        assert isinstance(err.value, grpc.RpcError)  # what Supervisor.call handles
    finally:
        _close(lane, server)


def test_hostile_length_is_an_oversized_message():
    lane = HostLane(slot_bytes=1 << 16)
    fd_in, fd_out, _ = lane.child_fds()

    def plugin() -> None:
        os.read(fd_in, 1)
        import mmap

        with mmap.mmap(lane.child_fds()[2], 1 << 16) as slot:
            struct.pack_into("<IIQ", slot, 0, 0, 0, 1 << 40)
        os.write(fd_out, b"\x01")

    t = threading.Thread(target=plugin)
    t.start()
    lane.methods = frozenset({"Schedule"})
    with pytest.raises(FastLaneError) as err:
        lane.call("Schedule", _snapshot(), scheduler_pb2.ScheduleResponse, 5.0)
    t.join()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "message" in err.value.details()
    lane.close()


def test_sandboxed_plugin_gets_the_fast_lane():
    root = Path(tempfile.mkdtemp(prefix="tritium-fl-"))  # short: a unix socket path has 107 bytes
    os.chmod(root, 0o755)
    try:
        sandbox = Sandbox(SandboxConfig(scratch_root=root / "scratch"), features=kernel_features())
        with Supervisor(sandbox=sandbox, policy=FAST) as s:
            s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
            inst = s.start("basic")
            assert inst.process.fastlane is not None
            assert SchedulerClient(s, "basic").schedule(_snapshot(21)).step_id == 21
            assert inst.process.fastlane.calls == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_call_gives_up_when_the_supervisor_saw_the_process_exit():
    # A surviving child could keep the doorbell open (no EOF): the watcher's peer_gone ends the wait.
    release = threading.Event()
    lane, server = _lane_with(lambda req, ctx: release.wait(10) and None)
    threading.Timer(0.3, setattr, (lane, "peer_gone", True)).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(FastLaneError) as err:
            lane.call("Schedule", _snapshot(), scheduler_pb2.ScheduleResponse, 30.0)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - t0 < 2
        assert lane.closed
    finally:
        release.set()
        _close(lane, server)
