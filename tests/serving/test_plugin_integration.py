"""The engine with its scheduling in the `basic` scheduler plugin: the in-core policy and the plugin's
policies decide alike, the SchedulerClient is the engine's policy, devices come and go while serving,
and the new config fields are checked."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.plugin_stack import FallbackPolicy, device_cores
from tritium.core.serving.scheduling import (
    DeviceLoad,
    InCorePolicy,
    QueuedRequest,
    ScheduleSnapshot,
    from_proto,
    to_proto,
)
from tritium.core.serving.serving_config import SCHEDULER_TYPES, ConfigError, ServingConfig
from tritium.plugins.scheduler_basic.policies import SchedulerState, schedule
from tritium.protos.tritium.plugin.v1 import common_pb2
from tritium.sdk import config as sdk_config

from tests.serving.fakes import FakeBatchRuntime, fake_model


def waiting(rid, prompt=10, priority=0):
    return QueuedRequest(rid, prompt, 0, prompt, 0, 0, priority, False, -1, rid)


def running_on(rid, device, pending=1):
    return QueuedRequest(rid, 10, 10, pending, 1, 0, 0, True, device, rid)


def test_in_core_energy_packs_busy_efficient_devices_first():
    policy = InCorePolicy(max_batch_size=16, placement="energy")
    devices = [DeviceLoad(0, 0, 4, efficiency=1.0), DeviceLoad(1, 0, 2, efficiency=4.0),
               DeviceLoad(2, 1, 4, efficiency=2.0)]
    queue = [running_on(9, 2)] + [waiting(i) for i in range(1, 6)]
    d = policy.schedule(ScheduleSnapshot(1, queue, devices, 0))
    # Device 2 is busy: it fills first (3 free slots), then the most efficient idle one (device 1).
    assert [(a.request_id, a.device_id) for a in d.batch] == [(9, 2), (1, 2), (2, 2), (3, 2), (4, 1), (5, 1)]


def test_in_core_latency_and_affinity():
    policy = InCorePolicy(max_batch_size=16, placement="latency", device_affinity="1,2")
    devices = [DeviceLoad(0, 0, 8, step_us=1.0), DeviceLoad(1, 2, 8, step_us=6000.0),
               DeviceLoad(2, 1, 8, step_us=1000.0)]
    d = policy.schedule(ScheduleSnapshot(1, [waiting(i) for i in range(1, 4)], devices, 0))
    # Device 0 is fastest but not allowed. Device 1: 3000 µs per sequence, device 2: 1000.
    # 1 -> 2 (2000 vs 9000), 2 -> 2 (3000), 3 -> 2 (4000 < 9000).
    assert [a.device_id for a in d.batch] == [2, 2, 2]


# ---- the in-core policy and the plugin's policies decide alike ----------------------------------------
# Values are exact in float32 (the proto's float fields), so threshold comparisons agree bit for bit.
_queue = st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 2), st.integers(0, 3)),
                  min_size=1, max_size=12)
_devices = st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.integers(0, 8), st.booleans(),
                              st.sampled_from([0.5, 1.0, 2.0, 4.0]),
                              st.sampled_from([0.0, 500.0, 1000.0, 4000.0])),
                    min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queue=_queue, devices=_devices, policy=st.sampled_from(SCHEDULER_TYPES),
       max_batch=st.integers(1, 8), chunk=st.sampled_from([1, 4, 16]), budget=st.sampled_from([0, 6, 20]),
       preempt=st.booleans(), threshold=st.sampled_from([0.5, 0.75, 1.0]))
def test_in_core_and_plugin_policies_make_the_same_decision(queue, devices, policy, max_batch, chunk,
                                                           budget, preempt, threshold):
    devs = []
    for i, (cap, run, avail, eff, step_us) in enumerate(devices):
        devs.append(DeviceLoad(i, min(run, cap), cap, available=avail or i == 0, efficiency=eff,
                               step_us=step_us))
    q = []
    for rid, (is_running, pending, priority, device) in enumerate(queue, start=1):
        if is_running and device < len(devs):
            q.append(QueuedRequest(rid, 5, 5, pending, 1, 0, priority, True, device, rid * 10))
        else:
            q.append(QueuedRequest(rid, pending, 0, pending, 0, 0, priority, False, -1, rid * 10))
    snap = ScheduleSnapshot(7, q, devs, budget)
    in_core = InCorePolicy(max_batch_size=max_batch, prefill_chunk=chunk, preempt_enabled=preempt,
                           placement=policy, load_threshold=threshold)
    state = SchedulerState(sdk_config.validate(common_pb2.SchedulerConfig(
        scheduler_type=policy, max_batch_size=max_batch, preempt_enabled=preempt, load_threshold=threshold)))
    assert from_proto(schedule(state, to_proto(snap, chunk))) == in_core.schedule(snap)


# ---- the SchedulerClient as the engine's policy, against the plugin process -------------------------
@pytest.fixture(scope="module")
def scheduler_sup():
    from tritium.plugin_host.discovery import BUILTIN_DIR, discover
    from tritium.plugin_host.supervisor import RestartPolicy, Supervisor

    sup = Supervisor(policy=RestartPolicy(backoff_initial_s=0.01))
    sup.register_discovered(discover({"builtin": [BUILTIN_DIR]}, entry_points=False, env={}))
    sup.start("basic")
    yield sup
    sup.close()


def _run(engine, prompts, params):
    tok = engine.model.tokenizer
    handles = [engine.submit(tok.encode(p), params) for p in prompts]
    while engine.step():
        pass
    return [[e.token_id for e in h] for h in handles]


@pytest.mark.parametrize("policy", SCHEDULER_TYPES)
def test_engine_steps_through_the_scheduler_plugin_like_the_in_core_policy(scheduler_sup, policy):
    import os
    import signal

    from tritium.plugin_host.client import SchedulerClient

    cfg = ServingConfig(max_batch_size=3, prefill_chunk=4, max_batch_tokens=9, devices=2,
                        scheduler_type=policy)
    prompts = [f"prompt number {i} " * (1 + i % 3) for i in range(5)]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    local = [FakeBatchRuntime(), FakeBatchRuntime()]
    want = _run(ServingEngine(fake_model(), local, cfg), prompts, params)

    client = SchedulerClient(scheduler_sup, "basic", prefill_chunk=cfg.prefill_chunk)
    client.configure(common_pb2.SchedulerConfig(scheduler_type=policy, max_batch_size=cfg.max_batch_size))
    remote = [FakeBatchRuntime(), FakeBatchRuntime()]
    engine = ServingEngine(fake_model(), remote, cfg, policy=client)
    tok = engine.model.tokenizer
    handles = [engine.submit(tok.encode(p), params) for p in prompts]
    steps = 0
    while engine.step():
        steps += 1
        if steps == 3 and policy == "energy":  # a crash of the scheduler changes nothing (reconfigured)
            os.kill(scheduler_sup.get("basic").instance.pid, signal.SIGKILL)
    assert [[e.token_id for e in h] for h in handles] == want
    if policy != "latency":  # latency placement follows measured step times: not repeatable
        assert [rt.calls for rt in remote] == [rt.calls for rt in local]  # same batches, chunks, devices
    assert client.calls == engine.counters.steps  # one Schedule call per engine step


def test_a_failing_scheduler_falls_back_to_the_in_core_policy():
    class Broken:
        def schedule(self, snapshot):
            raise RuntimeError("scheduler plugin gone")

    cfg = ServingConfig(max_batch_size=2)
    policy = FallbackPolicy(Broken(), InCorePolicy(max_batch_size=2))
    engine = ServingEngine(fake_model(), [FakeBatchRuntime()], cfg, policy=policy)
    out = _run(engine, ["a b", "c d e"], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    assert [len(x) for x in out] == [3, 3] and policy.fallbacks == engine.counters.steps


# ---- devices while serving --------------------------------------------------------------------------
def test_removing_a_device_moves_its_requests_and_changes_no_token():
    cfg = ServingConfig(max_batch_size=4, devices=2, scheduler_type="round_robin")
    prompts = ["alpha beta", "gamma", "delta epsilon zeta", "eta"]
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    want = _run(ServingEngine(fake_model(), [FakeBatchRuntime()], ServingConfig(max_batch_size=4)),
                prompts, params)
    rts = [FakeBatchRuntime(), FakeBatchRuntime()]
    engine = ServingEngine(fake_model(), rts, cfg)
    tok = engine.model.tokenizer
    handles = [engine.submit(tok.encode(p), params) for p in prompts]
    for _ in range(3):
        engine.step()
    on_0 = engine.devices()[0]["running"]
    assert on_0 == 2
    assert engine.remove_device(0, timeout=1)
    assert engine.counters.preemptions == on_0 and len(rts[0].freed) == on_0
    calls_0 = len(rts[0].calls)
    while engine.step():
        pass
    assert len(rts[0].calls) == calls_0  # no work on the removed device
    assert [[e.token_id for e in h] for h in handles] == want
    assert [d["available"] for d in engine.devices()] == [False, True]
    with pytest.raises(ValueError, match="last available device"):
        engine.remove_device(1)


def test_an_added_device_takes_new_work():
    cfg = ServingConfig(max_batch_size=4, scheduler_type="load_aware")
    rts = [FakeBatchRuntime()]
    engine = ServingEngine(fake_model(), rts, cfg)
    added = FakeBatchRuntime()
    engine.add_device(added)
    out = _run(engine, ["one", "two", "three", "four"], SamplingParams(temperature=0, max_tokens=2))
    assert len(out) == 4 and rts[0].calls and added.calls
    assert len(engine.devices()) == 2
    with pytest.raises(ValueError, match="context"):
        engine.add_device(FakeBatchRuntime(n_ctx=8))


def test_device_cores_split():
    assert device_cores(2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert device_cores(3, [0, 1, 2, 3]) == [[0], [1], [2]]
    assert device_cores(3, [4, 5]) == [[4], [5], [4]]


# ---- config --------------------------------------------------------------------------------------------
def test_serving_config_takes_the_scheduler_fields():
    for policy in ("round_robin", "load_aware", "energy", "latency"):
        assert ServingConfig(scheduler_type=policy).validated().scheduler_type == policy
    cfg = ServingConfig(devices=3, device_affinity="0,2", max_batch_size=4, preempt_enabled=True,
                        load_threshold=0.5, pin_devices=True, in_process=False, admin_port=0).validated()
    assert cfg.device_affinity == "0,2"
    for bad, field in [(dict(device_affinity="0,x"), "device_affinity"),
                       (dict(device_affinity="3"), "device_affinity"),
                       (dict(pin_devices=1), "pin_devices"), (dict(in_process="yes"), "in_process"),
                       (dict(admin_port=-1), "admin_port"), (dict(backend_plugin=""), "backend_plugin")]:
        with pytest.raises(ConfigError, match=field):
            ServingConfig(**bad).validated()


def test_the_plugin_stack_runs_confined_plugins_pinned_to_their_cores():
    import os

    from tritium.core.serving.plugin_stack import PluginStack

    from tests.conftest import BITNETCPP_FIXTURES

    cfg = ServingConfig(devices=2, pin_devices=True, threads=1, max_batch_size=2, n_ctx=64).validated()
    stack = PluginStack(cfg, BITNETCPP_FIXTURES / "bitnet-b158-tiny.i2_s.gguf")
    try:
        runtimes, _ = stack.start()
        rows = {r["name"]: r for r in stack.status()}
        assert set(rows) == {"cpu@0", "cpu@1", "basic"} and all(r["state"] == "ready" for r in rows.values())
        shares = device_cores(2)
        for i in (0, 1):
            pid = int(rows[f"cpu@{i}"]["pid"])
            assert os.sched_getaffinity(pid) == set(shares[i])
            status = open(f"/proc/{pid}/status").read()
            assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status  # sandboxed
        assert runtimes[1].step([(runtimes[1].new_sequence(), [1, 2, 3])])[0].shape[-1] > 0
    finally:
        stack.close()


def test_a_preempted_request_is_recomputed_with_its_original_chunk_boundaries():
    # The fp16 emulation rounds a multi-token step unlike single-token steps, so exact recompute
    # needs the same boundaries: prompt chunks, then one step per decoded token.
    cfg = ServingConfig(max_batch_size=1, prefill_chunk=4, preempt_enabled=True)
    rt = FakeBatchRuntime()
    engine = ServingEngine(fake_model(), [rt], cfg)
    tok = engine.model.tokenizer
    low = engine.submit(tok.encode("a low priority prompt"), SamplingParams(temperature=0, max_tokens=8))
    for _ in range(6):
        engine.step()
    first = [n for call in rt.calls for uid, toks in call if uid == 1 for n in [len(toks)]]
    high = engine.submit(tok.encode("urgent"), SamplingParams(temperature=0, max_tokens=2), priority=5)
    while engine.step():
        pass
    assert engine.counters.preemptions == 1 and [e.finish_reason for e in high][-1] == "length"
    uids = [uid for call in rt.calls for uid, _ in call]
    again = [len(toks) for call in rt.calls for uid, toks in call if uid == max(uids)]
    assert again[:len(first)] == first  # the recompute replays the same chunks, then continues
    assert all(n == 1 for n in again[len(first):])
    assert len([e for e in low]) == 8
