"""The scheduling policies of the `basic` scheduler, as plain functions over the snapshot messages.

Both policies build the batch the same way — running requests keep decoding (1 token each), then
waiting requests are admitted in priority-then-arrival order with their remaining prompt as a prefill
chunk, within max_batch_size sequences and max_batch_tokens tokens. They differ in where a newly
admitted request goes: round_robin cycles over the allowed devices; load_aware picks the least
loaded allowed device whose load is under load_threshold (none under it: the request waits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritium.protos.tritium.plugin.v1 import common_pb2, scheduler_pb2

POLICIES = ("round_robin", "load_aware")


@dataclass
class SchedulerState:
    """What the scheduler remembers between steps."""

    config: common_pb2.SchedulerConfig
    devices: dict[int, scheduler_pb2.DeviceLoad] = field(default_factory=dict)
    rr_next: int = 0

    def allowed(self) -> list[scheduler_pb2.DeviceLoad]:
        """Available devices permitted by device_affinity, by id."""
        ids = None
        if self.config.device_affinity != "auto":
            ids = {int(x) for x in self.config.device_affinity.split(",")}
        return [d for k, d in sorted(self.devices.items()) if d.available and (ids is None or k in ids)]


def _place(state: SchedulerState, policy: str, extra: dict[int, int]) -> int | None:
    """Device for a newly admitted request, or None if it must wait. `extra` counts this step's
    admissions per device so one step does not pile every request onto the same device."""
    devices = state.allowed()
    if not devices:
        return None
    if policy == "round_robin":
        for _ in range(len(devices)):
            d = devices[state.rr_next % len(devices)]
            state.rr_next += 1
            if not d.capacity or d.running + extra.get(d.device_id, 0) < d.capacity:
                return d.device_id
        return None

    def effective_load(d: scheduler_pb2.DeviceLoad) -> float:
        added = extra.get(d.device_id, 0)
        return d.load + (added / d.capacity if d.capacity else 0.0)

    candidates = [d for d in devices if effective_load(d) < state.config.load_threshold]
    if not candidates:
        return None
    return min(candidates, key=lambda d: (effective_load(d), d.device_id)).device_id


def schedule(state: SchedulerState, request: scheduler_pb2.ScheduleRequest) -> scheduler_pb2.ScheduleResponse:
    """The next step's batch (see the module docstring)."""
    cfg = state.config
    for d in request.devices:
        state.devices[d.device_id] = d
    if not state.devices:
        state.devices[0] = scheduler_pb2.DeviceLoad(device_id=0, available=True)
    budget = request.max_batch_tokens or None
    out = scheduler_pb2.ScheduleResponse(step_id=request.step_id)
    running = [r for r in request.queue if r.running]
    waiting = sorted((r for r in request.queue if not r.running), key=lambda r: (-r.priority, r.arrival_us))

    preempted: set[int] = set()
    if cfg.preempt_enabled and waiting and len(running) >= cfg.max_batch_size:
        # Make room for the best waiting request by preempting the least important running one.
        victim = min(running, key=lambda r: (r.priority, -r.arrival_us))
        if waiting[0].priority > victim.priority:
            preempted.add(victim.request_id)
            out.preempt.append(victim.request_id)

    for r in running:
        if r.request_id in preempted or len(out.batch) >= cfg.max_batch_size:
            continue
        if budget is not None and budget < 1:
            break
        out.batch.append(scheduler_pb2.Assignment(request_id=r.request_id, device_id=r.device_id, tokens=1))
        budget = None if budget is None else budget - 1

    admitted: dict[int, int] = {}
    for r in waiting:
        if len(out.batch) >= cfg.max_batch_size or (budget is not None and budget < 1):
            break
        remaining = max(r.prompt_tokens - r.processed_tokens, 1)
        tokens = remaining if budget is None else min(remaining, budget)
        device = _place(state, cfg.scheduler_type, admitted)
        if device is None:
            break  # no device can take more work this step; later arrivals must not jump the queue
        admitted[device] = admitted.get(device, 0) + 1
        out.batch.append(scheduler_pb2.Assignment(request_id=r.request_id, device_id=device, tokens=tokens))
        budget = None if budget is None else budget - tokens
    return out
