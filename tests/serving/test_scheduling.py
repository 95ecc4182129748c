"""The in-core scheduling policy's decisions on scripted workloads, alone and driving the engine."""

from __future__ import annotations

from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.scheduling import (
    Assignment,
    DeviceLoad,
    InCorePolicy,
    QueuedRequest,
    ScheduleSnapshot,
)
from tritium.core.serving.serving_config import ServingConfig

from tests.serving.fakes import FakeBatchRuntime, fake_model


def waiting(rid, prompt=10, priority=0, arrival=None):
    arrival = rid if arrival is None else arrival
    return QueuedRequest(rid, prompt, 0, prompt, 0, 0, priority, False, -1, arrival)


def running(rid, device=0, priority=0, pending=1):
    return QueuedRequest(rid, 10, 10, pending, 1, 0, priority, True, device, rid)


def snap(queue, devices=None, budget=0):
    return ScheduleSnapshot(1, list(queue), list(devices or [DeviceLoad(0, 0, 4)]), budget)


def test_decodes_first_then_waiting_by_priority_then_arrival_with_chunks_and_budget():
    policy = InCorePolicy(max_batch_size=4, prefill_chunk=8)
    queue = [running(1, pending=1), waiting(2, prompt=20), waiting(3, prompt=5, priority=2),
             running(4, pending=30)]
    d = policy.schedule(snap(queue, [DeviceLoad(0, 2, 8)], budget=12))
    assert d.batch == [Assignment(1, 0, 1), Assignment(4, 0, 8), Assignment(3, 0, 3)]
    d = policy.schedule(snap(queue, [DeviceLoad(0, 2, 8)]))
    assert d.batch == [Assignment(1, 0, 1), Assignment(4, 0, 8), Assignment(3, 0, 5), Assignment(2, 0, 8)]
    assert d.preempt == []


def test_preemption_picks_the_least_important_latest_running_request():
    policy = InCorePolicy(max_batch_size=2, preempt_enabled=True)
    queue = [running(1, priority=1), running(2, priority=0), running(3, priority=0),
             waiting(4, priority=5), waiting(5, priority=0)]
    d = policy.schedule(snap(queue, [DeviceLoad(0, 3, 8)]))
    # Batch full with 3 running > 2: request 4 outranks the priority-0 ones; the latest (3) goes first.
    assert d.preempt == [3, 2]
    assert [a.request_id for a in d.batch] == [1, 4]
    assert InCorePolicy(max_batch_size=2).schedule(snap(queue, [DeviceLoad(0, 3, 8)])).preempt == []


def test_round_robin_alternates_devices_and_skips_full_ones():
    policy = InCorePolicy(max_batch_size=8, placement="round_robin")
    devices = [DeviceLoad(0, 0, 2), DeviceLoad(1, 2, 2), DeviceLoad(2, 0, 2)]
    d = policy.schedule(snap([waiting(i) for i in range(1, 5)], devices))
    assert [a.device_id for a in d.batch] == [0, 2, 0, 2]


def test_load_aware_moves_new_work_away_from_a_device_above_the_threshold():
    policy = InCorePolicy(max_batch_size=8, placement="load_aware", load_threshold=0.5)
    devices = [DeviceLoad(0, 3, 4), DeviceLoad(1, 0, 4)]  # device 0 at 75 %, device 1 idle
    d = policy.schedule(snap([waiting(i) for i in range(1, 6)], devices))
    # Device 0 is above the threshold: device 1 takes everything until it reaches the threshold too
    # (2 of 4); then the least loaded device (device 1 at 50 % < 75 %), then ties go to the lower id,
    # and the last free slot is on device 1.
    assert [a.device_id for a in d.batch] == [1, 1, 1, 0, 1]
    d = policy.schedule(snap([waiting(i) for i in range(1, 4)], [DeviceLoad(0, 3, 4), DeviceLoad(1, 3, 4)]))
    assert [a.device_id for a in d.batch] == [0, 1]  # then both full: the third waits


def test_engine_on_two_devices_places_requests_and_steps_each_device_once():
    rts = [FakeBatchRuntime(), FakeBatchRuntime()]
    cfg = ServingConfig(max_batch_size=4, scheduler_type="load_aware", load_threshold=0.5, devices=2)
    engine = ServingEngine(fake_model(), rts, cfg)
    tok = fake_model().tokenizer
    handles = [engine.submit(tok.encode(f"req {i}"), SamplingParams(temperature=0, max_tokens=3))
               for i in range(4)]
    engine.step()
    # load_aware spreads them: each new request goes to the less loaded device.
    assert [len(rt.calls[0]) for rt in rts] == [2, 2]
    assert engine.counters.runtime_calls == 2 and engine.counters.steps == 1
    while engine.step():
        pass
    assert all([e.finish_reason for e in h][-1] == "length" for h in handles)
    assert len(rts[0].freed) == len(rts[1].freed) == 2
