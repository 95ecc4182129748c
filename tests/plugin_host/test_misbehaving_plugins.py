"""Plugins that break the contract: each gets a clear error naming it and what was wrong, the plugin is
stopped or restarted, and the core (here: the supervisor and a well-behaved plugin) keeps serving."""

from __future__ import annotations

import os
import signal
import time

import pytest
from tritium.plugin_host.client import SchedulerClient
from tritium.plugin_host.discovery import BUILTIN_DIR, discover
from tritium.plugin_host.errors import (
    IncompatiblePluginError,
    PluginHandshakeError,
    PluginIntegrityError,
    PluginProtocolError,
    PluginStartError,
    PluginUnavailableError,
)
from tritium.plugin_host.supervisor import PluginState, RestartPolicy, Supervisor
from tritium.protos.tritium.plugin.v1 import scheduler_pb2

from tests.process_control import freeze

FAST = RestartPolicy(
    max_crashes=3, window_s=60, backoff_initial_s=0.01, backoff_max_s=0.05, call_attempts=2, ready_wait_s=20
)


@pytest.fixture(scope="module")
def sup():
    s = Supervisor(policy=FAST, launch_options={"handshake_timeout": 3.0})
    s.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    s.start("basic")
    yield s
    s.close()


def _still_serving(sup):
    resp = SchedulerClient(sup, "basic").schedule(scheduler_pb2.ScheduleRequest(step_id=77))
    assert resp.step_id == 77


def _no_process_left(manifest):
    # Every process started from this package is gone (killed by the launcher).
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert str(manifest.root).encode() not in f.read()
            except OSError:
                pass


@pytest.mark.parametrize(
    ("mode", "error", "needles"),
    [
        (
            "garbage_handshake",
            PluginHandshakeError,
            ["garbage handshake line", "Hello! I am a plugin, honest.", "expected 6"],
        ),
        (
            "exit_early",
            PluginStartError,
            ["exited with status 3 before its handshake", "cannot find my model weights"],
        ),
        ("wrong_api", IncompatiblePluginError, ["tritium.plugin.v9", "tritium.plugin.v1"]),
        ("wrong_identity", PluginProtocolError, ["Info disagrees with the manifest", "somebody-else"]),
    ],
)
def test_bad_start_is_refused_with_a_clear_error(sup, make_package, mode, error, needles):
    m = make_package(mode)
    sup.register(m)
    with pytest.raises(error) as err:
        sup.start(m.name)
    msg = str(err.value)
    assert f"plugin {m.name!r}" in msg
    for needle in needles:
        assert needle in msg
    assert sup.get(m.name).state == PluginState.FAILED and sup.get(m.name).error
    _no_process_left(m)
    _still_serving(sup)


def test_silent_plugin_times_out(sup, make_package):
    m = make_package("no_handshake")
    sup.register(m)
    t0 = time.monotonic()
    with pytest.raises(PluginHandshakeError, match=r"'no-handshake'.*no handshake line within 3.0 s"):
        sup.start(m.name)
    assert time.monotonic() - t0 < 6
    _no_process_left(m)


def test_tampered_package_is_not_started(sup, make_package):
    m = make_package("scheduler_hang", name="tampered")
    (m.root / "plugin_main.py").write_text("print('something else')\n")
    sup.register(m)
    with pytest.raises(PluginIntegrityError, match="'tampered'.*plugin_main.py: sha256 is"):
        sup.start(m.name)
    assert sup.get("tampered").state == PluginState.FAILED


def test_hung_call_kills_and_restarts_the_plugin(sup, make_package):
    m = make_package("scheduler_hang")
    sup.register(m)
    sup.start(m.name)
    client = SchedulerClient(sup, m.name, timeout_s=0.5)
    first_pid = sup.get(m.name).instance.pid
    with pytest.raises(
        PluginUnavailableError, match=r"'scheduler-hang'.*Schedule failed 2 times; last: Schedule hung"
    ):
        client.schedule(scheduler_pb2.ScheduleRequest(step_id=1))
    assert sup.wait_for(m.name, lambda p: p.state == PluginState.READY and p.instance.pid != first_pid, 10)
    assert sup.get(m.name).restarts >= 1
    _still_serving(sup)
    sup.stop(m.name, drain=False)


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("scheduler_malformed", "answered with a malformed message"),
        ("scheduler_oversized", "answered with an oversized message"),
    ],
)
def test_bad_messages_are_protocol_errors_and_the_plugin_is_restarted(sup, make_package, mode, needle):
    m = make_package(mode)
    sup.register(m)
    first_pid = sup.start(m.name).pid
    with pytest.raises(PluginProtocolError) as err:
        SchedulerClient(sup, m.name).schedule(scheduler_pb2.ScheduleRequest(step_id=1))
    assert needle in str(err.value) and f"plugin {m.name!r}" in str(err.value)
    assert sup.wait_for(m.name, lambda p: p.state == PluginState.READY and p.instance.pid != first_pid, 10)
    _still_serving(sup)
    sup.stop(m.name, drain=False)


@pytest.mark.parametrize(
    ("mode", "exit_how"),
    [("scheduler_crash_once", "exited with status 7"), ("scheduler_segv_once", "killed by signal 11")],
)
def test_crash_during_a_call_is_retried_transparently(sup, make_package, tmp_path, mode, exit_how):
    m = make_package(mode)
    os.environ["CRASH_MARKER"] = str(tmp_path / "crashed")
    try:
        sup.register(m)
        sup.start(m.name)
        resp = SchedulerClient(sup, m.name).schedule(scheduler_pb2.ScheduleRequest(step_id=5))
    finally:
        del os.environ["CRASH_MARKER"]
    assert resp.step_id == 5
    assert (tmp_path / "crashed").exists() and sup.get(m.name).restarts == 1
    assert exit_how in sup.get(m.name).last_exit
    sup.stop(m.name, drain=False)


def test_stopped_plugin_is_found_by_the_health_probe(make_package):
    policy = RestartPolicy(backoff_initial_s=0.01, health_interval_s=0.2, health_timeout_s=0.5)
    with Supervisor(policy=policy) as s:
        m = make_package("scheduler_hang", name="frozen")
        s.register(m)
        pid = s.start(m.name).pid
        t0 = time.monotonic()
        freeze(pid)  # alive but answering nothing, not even health checks
        assert s.wait_for(m.name, lambda p: p.instance is not None and p.instance.pid != pid, 15)
        assert time.monotonic() - t0 < 5
        assert "health check" in s.get(m.name).error or s.get(m.name).restarts == 1


def test_circuit_breaker_opens_and_calls_go_to_the_fallback(sup, make_package):
    m = make_package("scheduler_hang", name="flaky")
    sup.register(m)
    sup.start(m.name)
    for _ in range(FAST.max_crashes):
        pid = sup.get("flaky").instance.pid
        os.kill(pid, signal.SIGKILL)
        assert sup.wait_for(
            "flaky",
            lambda p, pid=pid: (
                p.state == PluginState.FAILED or (p.instance is not None and p.instance.pid != pid)
            ),
            10,
        )
    mp = sup.get("flaky")
    assert mp.state == PluginState.FAILED and "circuit open" in mp.error
    with pytest.raises(PluginUnavailableError, match="'flaky'.*circuit open"):
        SchedulerClient(sup, "flaky").schedule(scheduler_pb2.ScheduleRequest(step_id=1))
    sup.set_fallback("flaky", "basic")
    assert SchedulerClient(sup, "flaky").schedule(scheduler_pb2.ScheduleRequest(step_id=3)).step_id == 3
