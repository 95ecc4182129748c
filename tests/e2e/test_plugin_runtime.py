"""End to end: the builtin scheduler plugin as a real process under the supervisor."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritium.plugin_host.client import SchedulerClient
from tritium.plugin_host.discovery import BUILTIN_DIR, discover
from tritium.plugin_host.errors import PluginCallError
from tritium.plugin_host.launcher import launch
from tritium.plugin_host.supervisor import PluginState, Supervisor
from tritium.protos.tritium.plugin.v1 import common_pb2, common_pb2_grpc, scheduler_pb2


@pytest.fixture(scope="module")
def sup():
    s = Supervisor()
    s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    s.start("basic")
    yield s
    s.close()


def _request(n=3):
    return scheduler_pb2.ScheduleRequest(
        step_id=4,
        queue=[scheduler_pb2.QueuedRequest(request_id=i, prompt_tokens=5, arrival_us=i) for i in range(n)],
        devices=[scheduler_pb2.DeviceLoad(device_id=0, capacity=16, available=True)],
    )


def test_ready_plugin_is_named_in_ps_and_healthy(sup):
    mp = sup.get("basic")
    assert mp.state == PluginState.READY and mp.layer == "builtin"
    inst = mp.instance
    with open(f"/proc/{inst.pid}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode()
    assert "tritium-plugin scheduler basic" in cmdline
    health = health_pb2_grpc.HealthStub(inst.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    info = inst.stub(common_pb2_grpc.PluginStub).Info(common_pb2.InfoRequest(), timeout=5)
    assert (info.name, info.kind, info.version, info.api_version, info.pid) == (
        "basic",
        common_pb2.PLUGIN_KIND_SCHEDULER,
        "0.1.0",
        "tritium.plugin.v1",
        inst.pid,
    )
    assert "policy:load_aware" in info.capabilities


def test_schedule_and_configure_through_the_client(sup):
    client = SchedulerClient(sup, "basic")
    applied = client.configure(common_pb2.SchedulerConfig(max_batch_size=2))
    assert applied.max_batch_size == 2 and applied.scheduler_type == "load_aware"
    resp = client.schedule(_request())
    assert resp.step_id == 4 and [a.request_id for a in resp.batch] == [0, 1]
    with pytest.raises(PluginCallError) as err:
        client.configure(common_pb2.SchedulerConfig(scheduler_type="fastest"))
    assert "INVALID_ARGUMENT" in str(err.value) and "scheduler_type 'fastest'" in str(err.value)
    assert "'basic'" in str(err.value)
    client.configure(common_pb2.SchedulerConfig())
    metrics = (
        sup.get("basic")
        .instance.stub(common_pb2_grpc.PluginStub)
        .Metrics(common_pb2.MetricsRequest(), timeout=5)
    )
    assert any(m.name == "schedule_calls_total" and m.value >= 1 for m in metrics.metrics)


def test_sigkill_is_detected_within_a_second_and_the_plugin_restarts(sup):
    mp = sup.get("basic")
    old_pid, restarts = mp.instance.pid, mp.restarts
    t_kill = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    assert sup.wait_for("basic", lambda p: p.restarts == restarts + 1 and p.state == PluginState.READY, 15)
    assert mp.last_crash_detected_at - t_kill < 1.0
    assert "killed by signal 9" in mp.last_exit
    assert mp.instance.pid != old_pid
    assert SchedulerClient(sup, "basic").schedule(_request()).step_id == 4
    row = next(r for r in sup.status() if r["name"] == "basic")
    assert row["restarts"] == restarts + 1 and row["state"] == "ready" and row["pid"] == mp.instance.pid


def test_a_call_in_flight_when_the_plugin_dies_is_retried(sup):
    mp = sup.get("basic")
    killed = []

    def go(inst):
        if not killed:  # the first attempt's process dies under it
            killed.append(inst.pid)
            os.kill(inst.pid, signal.SIGKILL)
            time.sleep(0.05)
        from tritium.protos.tritium.plugin.v1 import scheduler_pb2_grpc

        return inst.stub(scheduler_pb2_grpc.SchedulerStub).Schedule(_request(), timeout=5), inst.pid

    resp, pid = sup.call("basic", go, method="Schedule")
    assert resp.step_id == 4 and pid != killed[0] and mp.state == PluginState.READY


def test_plugin_exits_when_its_host_goes_away():
    manifest = discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}).require("basic")
    proc = launch(manifest)
    try:
        proc.process.stdin.close()  # what the kernel does when the host process dies
        assert proc.process.wait(timeout=5) == 0
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
        proc.channel.close()


def test_stop_drains_and_removes_the_socket(sup):
    inst = sup.get("basic").instance
    sock_dir = os.path.dirname(inst.process.handshake.address)
    sup.stop("basic")
    assert sup.get("basic").state == PluginState.STOPPED
    assert inst.process.process.returncode == 0
    assert not os.path.exists(sock_dir)
    channel = grpc.insecure_channel(inst.process.handshake.target())
    with pytest.raises(grpc.RpcError):
        common_pb2_grpc.PluginStub(channel).Info(common_pb2.InfoRequest(), timeout=1)
    channel.close()


def test_prometheus_collector_reexports_plugin_metrics(sup):
    from prometheus_client import CollectorRegistry, generate_latest
    from tritium.plugin_host.metrics import PluginMetricsCollector

    if sup.get("basic").state != PluginState.READY:
        sup.start("basic")
    SchedulerClient(sup, "basic").schedule(_request())
    registry = CollectorRegistry()
    registry.register(PluginMetricsCollector(sup))
    text = generate_latest(registry).decode()
    assert 'tritium_plugin_up{kind="scheduler",plugin="basic"} 1.0' in text
    assert 'tritium_plugin_restarts_total{kind="scheduler",plugin="basic"}' in text
    line = next(x for x in text.splitlines() if x.startswith("tritium_plugin_schedule_calls_total{"))
    assert 'plugin="basic"' in line and float(line.rsplit(" ", 1)[1]) >= 1
