"""Scripted workloads through the `basic` scheduler plugin's policy functions (the code its process runs):
each step's snapshot is built from a small simulated engine, and the decisions are checked step by step.

The engine simulation is deliberately tiny: a request placed on a device stays there, feeds the tokens it
was given, and decodes `max_tokens` tokens; the device loads the next snapshot carries follow from that.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tritium.plugins.scheduler_basic.policies import POLICIES, SchedulerState, schedule
from tritium.protos.tritium.plugin.v1 import common_pb2, scheduler_pb2
from tritium.sdk import config


@dataclass
class SimRequest:
    id: int
    prompt: int
    max_tokens: int
    arrival: int
    priority: int = 0
    fed: int = 0
    generated: int = 0
    device: int = -1

    @property
    def pending(self) -> int:
        return self.prompt + self.generated - self.fed


class SimEngine:
    """Just enough engine to drive the scheduler over many steps."""

    def __init__(self, devices: list[dict], **cfg) -> None:
        self.state = SchedulerState(config.validate(common_pb2.SchedulerConfig(**cfg)))
        self.devices = devices  # {"capacity": .., "efficiency": .., "step_us": ..}
        self.live: dict[int, SimRequest] = {}
        self.step_id = 0
        self.decisions: list[scheduler_pb2.ScheduleResponse] = []

    def add(self, *reqs: SimRequest) -> None:
        for r in reqs:
            self.live[r.id] = r

    def snapshot(self, max_batch_tokens: int = 0, prefill_chunk: int = 0) -> scheduler_pb2.ScheduleRequest:
        running = [0] * len(self.devices)
        for r in self.live.values():
            if r.device >= 0:
                running[r.device] += 1
        devs = []
        for i, d in enumerate(self.devices):
            msg = scheduler_pb2.DeviceLoad(device_id=i, running=running[i], capacity=d["capacity"],
                                           load=running[i] / d["capacity"],
                                           available=d.get("available", True))
            if "efficiency" in d:
                msg.efficiency = d["efficiency"]
            if "step_us" in d:
                msg.step_us = d["step_us"]
            devs.append(msg)
        queue = [scheduler_pb2.QueuedRequest(
            request_id=r.id, prompt_tokens=r.prompt, processed_tokens=r.fed, pending_tokens=r.pending,
            generated_tokens=r.generated, max_tokens=r.max_tokens, priority=r.priority,
            running=r.device >= 0, device_id=r.device, arrival_us=r.arrival)
            for r in sorted(self.live.values(), key=lambda r: r.arrival)]
        return scheduler_pb2.ScheduleRequest(step_id=self.step_id, queue=queue, devices=devs,
                                             max_batch_tokens=max_batch_tokens, prefill_chunk=prefill_chunk)

    def step(self, **snap) -> scheduler_pb2.ScheduleResponse:
        out = schedule(self.state, self.snapshot(**snap))
        assert out.step_id == self.step_id
        self.step_id += 1
        for rid in out.preempt:
            r = self.live[rid]
            r.device, r.fed = -1, 0
        for a in out.batch:
            r = self.live[a.request_id]
            assert 1 <= a.tokens <= r.pending
            assert r.device in (-1, a.device_id), "a running request must stay on its device"
            r.device = a.device_id
            r.fed += a.tokens
            if r.fed == r.prompt + r.generated:
                r.generated += 1
                if r.generated >= r.max_tokens:
                    del self.live[r.id]
        self.decisions.append(out)
        return out


def placements(out: scheduler_pb2.ScheduleResponse) -> dict[int, int]:
    return {a.request_id: a.device_id for a in out.batch}


def test_all_four_policies_are_offered_and_configurable():
    assert POLICIES == ("round_robin", "load_aware", "energy", "latency")
    for p in POLICIES:
        assert config.validate(common_pb2.SchedulerConfig(scheduler_type=p),
                               supported_policies=POLICIES).scheduler_type == p


def test_energy_packs_onto_the_most_efficient_busy_device_before_opening_another():
    # Device 1 is the most efficient; it takes work until it is full, then device 2 (next most
    # efficient), and device 0 (least efficient) stays idle throughout.
    eng = SimEngine([{"capacity": 4, "efficiency": 1.0}, {"capacity": 3, "efficiency": 3.0},
                     {"capacity": 4, "efficiency": 2.0}], scheduler_type="energy", max_batch_size=16)
    eng.add(*(SimRequest(i, prompt=2, max_tokens=5, arrival=i) for i in range(1, 6)))
    out = eng.step()
    assert placements(out) == {1: 1, 2: 1, 3: 1, 4: 2, 5: 2}
    # A later arrival joins the busy device 2, not the idle (and least efficient) device 0.
    eng.add(SimRequest(6, prompt=2, max_tokens=5, arrival=6))
    out = eng.step()
    assert placements(out)[6] == 2
    while eng.live:
        out = eng.step()
        assert all(a.device_id != 0 for a in out.batch)


def test_energy_prefers_an_already_busy_device_over_an_idle_more_efficient_one():
    eng = SimEngine([{"capacity": 4, "efficiency": 1.0}, {"capacity": 4, "efficiency": 5.0}],
                    scheduler_type="energy", max_batch_size=8)
    busy = SimRequest(1, prompt=1, max_tokens=50, arrival=1, device=0, fed=1, generated=1)
    eng.add(busy, SimRequest(2, prompt=3, max_tokens=2, arrival=2))
    assert placements(eng.step()) == {1: 0, 2: 0}


def test_latency_picks_the_device_with_the_lowest_expected_step_time():
    # Device 0 is slow (4 ms per sequence), device 1 fast (1 ms per sequence): device 1 takes requests
    # until its queue makes it slower than device 0 with one more sequence.
    eng = SimEngine([{"capacity": 8, "step_us": 4000.0}, {"capacity": 8, "step_us": 1000.0}],
                    scheduler_type="latency", max_batch_size=16)
    eng.add(*(SimRequest(i, prompt=1, max_tokens=3, arrival=i) for i in range(1, 7)))
    # Expected per device with n sequences already placed: dev0 4000*(n+1), dev1 1000*(n+1).
    # 1..4 -> dev1 (1000, 2000, 3000, 4000 vs 4000: tie goes to the lower load), 5 -> dev0, 6 -> dev1.
    out = eng.step()
    assert [placements(out)[i] for i in range(1, 7)] == [1, 1, 1, 0, 1, 1]


def test_latency_without_step_times_is_shortest_queue():
    eng = SimEngine([{"capacity": 8}, {"capacity": 8}, {"capacity": 8}], scheduler_type="latency")
    eng.add(SimRequest(1, prompt=1, max_tokens=9, arrival=1, device=0, fed=1, generated=1),
            SimRequest(2, prompt=1, max_tokens=9, arrival=2, device=0, fed=1, generated=1),
            SimRequest(3, prompt=1, max_tokens=9, arrival=3, device=2, fed=1, generated=1))
    eng.add(*(SimRequest(i, prompt=2, max_tokens=2, arrival=i) for i in (4, 5, 6)))
    assert {k: v for k, v in placements(eng.step()).items() if k >= 4} == {4: 1, 5: 1, 6: 2}


@pytest.mark.parametrize("policy", POLICIES)
def test_chunked_prefill_decodes_first_and_every_request_completes(policy):
    """Through the plugin the engine's chunked prefill must keep working: a running request with a long
    pending prompt gets prefill_chunk tokens per step, decodes go first, the token budget holds."""
    eng = SimEngine([{"capacity": 4}, {"capacity": 4}], scheduler_type=policy, max_batch_size=4)
    eng.add(SimRequest(1, prompt=3, max_tokens=6, arrival=1),
            SimRequest(2, prompt=40, max_tokens=2, arrival=2),
            SimRequest(3, prompt=5, max_tokens=3, arrival=3))
    steps = 0
    while eng.live:
        before = {r.id: (r.pending, r.device >= 0) for r in eng.live.values()}
        out = eng.step(max_batch_tokens=12, prefill_chunk=8)
        steps += 1
        assert steps < 100 and out.batch, "a live queue must make progress"
        assert sum(a.tokens for a in out.batch) <= 12
        assert all(a.tokens <= 8 for a in out.batch)
        # Among the running requests, decodes (1 pending token) come before prefill chunks.
        kinds = [before[a.request_id][0] > 1 for a in out.batch if before[a.request_id][1]]
        assert kinds == sorted(kinds)
    chunks_of_2 = [a.tokens for d in eng.decisions for a in d.batch if a.request_id == 2]
    assert chunks_of_2[:5] == [8, 8, 8, 8, 8] and sum(chunks_of_2) == 40 + 1


def test_pending_tokens_after_preemption_recomputes_the_whole_history():
    # A preempted request comes back with processed_tokens 0 and pending = prompt + generated.
    st = SchedulerState(config.validate(common_pb2.SchedulerConfig()))
    q = [scheduler_pb2.QueuedRequest(request_id=1, prompt_tokens=4, processed_tokens=0, generated_tokens=6,
                                     pending_tokens=10, arrival_us=1)]
    out = schedule(st, scheduler_pb2.ScheduleRequest(step_id=1, queue=q, devices=[
        scheduler_pb2.DeviceLoad(device_id=0, capacity=4, available=True)]))
    assert [(a.request_id, a.tokens) for a in out.batch] == [(1, 10)]
    # Without the field (an older core), the prompt's remainder is used.
    q[0].ClearField("pending_tokens")
    out = schedule(st, scheduler_pb2.ScheduleRequest(step_id=2, queue=q))
    assert [(a.request_id, a.tokens) for a in out.batch] == [(1, 4)]


def test_unavailable_devices_get_no_new_work_under_any_policy():
    for policy in POLICIES:
        eng = SimEngine([{"capacity": 4, "available": False, "efficiency": 9.0, "step_us": 1.0},
                         {"capacity": 4}], scheduler_type=policy)
        eng.add(*(SimRequest(i, prompt=1, max_tokens=1, arrival=i) for i in range(1, 4)))
        assert set(placements(eng.step()).values()) == {1}, policy


def test_preemption_makes_room_for_several_higher_priority_arrivals():
    eng = SimEngine([{"capacity": 2}], scheduler_type="load_aware", max_batch_size=2, preempt_enabled=True)
    eng.add(SimRequest(1, prompt=1, max_tokens=9, arrival=1, device=0, fed=1, generated=1),
            SimRequest(2, prompt=1, max_tokens=9, arrival=2, device=0, fed=1, generated=1),
            SimRequest(3, prompt=2, max_tokens=1, arrival=3, priority=5),
            SimRequest(4, prompt=2, max_tokens=1, arrival=4, priority=5))
    out = eng.step()
    assert sorted(out.preempt) == [1, 2] and sorted(placements(out)) == [3, 4]
