"""The scheduling policies of the `basic` scheduler, as plain functions over the snapshot messages.

Every policy builds the batch the same way: running requests first, decodes (1 pending token) before
prefill chunks so a long prompt never stalls running decodes, then waiting requests in
priority-then-arrival order; each request processes min(pending tokens, prefill_chunk) tokens, within
max_batch_size sequences and max_batch_tokens tokens. With preempt_enabled, a full batch makes room for
each waiting request that outranks the least important running one (lowest priority, latest arrival).

They differ in where a newly admitted request goes (a running request stays where its KV cache is):

- round_robin: cycles over the allowed devices that have room (running < capacity).
- load_aware: the least loaded allowed device (`DeviceLoad.load` plus this step's admissions);
  devices at or above load_threshold get new work only when every device is (a single device still
  fills its batch); a full device gets none.
- energy: packs work onto the fewest, most efficient devices, so idle devices can stay idle: among
  devices with room, those already running work come first, then the most efficient
  (`DeviceLoad.efficiency`, default 1), then the fullest. An idle device is opened only when every
  busy one is full.
- latency: the device where the request's steps are expected to finish soonest: the expected step
  time with one more sequence, `step_us / max(running, 1) * (running + 1)` using the device's recent
  step time (`DeviceLoad.step_us`; unknown: 1 per sequence, so the shortest queue), ties to the lower
  load, then the lower id.

`extra` counts this step's admissions per device, so one step does not pile every request onto the
device that looked best before the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritium.protos.tritium.plugin.v1 import common_pb2, scheduler_pb2

POLICIES = ("round_robin", "load_aware", "energy", "latency")


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


def _efficiency(d: scheduler_pb2.DeviceLoad) -> float:
    return d.efficiency if d.HasField("efficiency") and d.efficiency > 0 else 1.0


def _place(state: SchedulerState, policy: str, extra: dict[int, int]) -> int | None:
    """Device for a newly admitted request, or None if it must wait (module docstring)."""
    devices = state.allowed()
    if not devices:
        return None

    def running(d: scheduler_pb2.DeviceLoad) -> int:
        return d.running + extra.get(d.device_id, 0)

    def has_room(d: scheduler_pb2.DeviceLoad) -> bool:
        return not d.capacity or running(d) < d.capacity

    if policy == "round_robin":
        for _ in range(len(devices)):
            d = devices[state.rr_next % len(devices)]
            state.rr_next += 1
            if has_room(d):
                return d.device_id
        return None

    open_ = [d for d in devices if has_room(d)]
    if not open_:
        return None

    def load(d: scheduler_pb2.DeviceLoad) -> float:
        added = extra.get(d.device_id, 0)
        return d.load + (added / d.capacity if d.capacity else 0.0)

    if policy == "energy":
        best = min(open_, key=lambda d: (running(d) == 0, -_efficiency(d), -running(d), d.device_id))
        return best.device_id
    if policy == "latency":

        known = [d.step_us / max(d.running, 1) for d in open_ if d.step_us > 0]
        default = sum(known) / len(known) if known else 1.0  # a device not measured yet: the average

        def expected_us(d: scheduler_pb2.DeviceLoad) -> float:
            per_seq = d.step_us / max(d.running, 1) if d.step_us > 0 else default
            return per_seq * (running(d) + 1)

        return min(open_, key=lambda d: (expected_us(d), load(d), d.device_id)).device_id
    return min(open_, key=lambda d: (load(d) >= state.config.load_threshold, load(d), d.device_id)).device_id


def _pending(r: scheduler_pb2.QueuedRequest) -> int:
    if r.HasField("pending_tokens"):
        return max(r.pending_tokens, 1)
    return max(r.prompt_tokens - r.processed_tokens, 1)


def _preempt(
    cfg: common_pb2.SchedulerConfig,
    running: list[scheduler_pb2.QueuedRequest],
    waiting: list[scheduler_pb2.QueuedRequest],
    out: scheduler_pb2.ScheduleResponse,
) -> list[scheduler_pb2.QueuedRequest]:
    """Preempt running requests to make room for waiting ones that outrank them; the ones that stay."""
    kept = list(running)
    taken = len(kept)
    for w in waiting:
        while taken >= cfg.max_batch_size:
            if not kept:
                return kept
            victim = min(kept, key=lambda r: (r.priority, -r.arrival_us, -r.request_id))
            if w.priority <= victim.priority:
                return kept
            kept.remove(victim)
            out.preempt.append(victim.request_id)
            taken -= 1
        taken += 1
    return kept


def schedule(state: SchedulerState, request: scheduler_pb2.ScheduleRequest) -> scheduler_pb2.ScheduleResponse:
    """The next step's batch (see the module docstring)."""
    cfg = state.config
    for d in request.devices:
        state.devices[d.device_id] = d
    if not state.devices:
        state.devices[0] = scheduler_pb2.DeviceLoad(device_id=0, available=True)
    budget = request.max_batch_tokens or None
    chunk = request.prefill_chunk or None
    out = scheduler_pb2.ScheduleResponse(step_id=request.step_id)
    order = sorted(request.queue, key=lambda r: (-r.priority, r.arrival_us, r.request_id))
    running = [r for r in order if r.running]
    waiting = [r for r in order if not r.running]
    if cfg.preempt_enabled:
        running = _preempt(cfg, running, waiting, out)

    def tokens_for(r: scheduler_pb2.QueuedRequest) -> int:
        n = _pending(r) if chunk is None else min(_pending(r), chunk)
        return n if budget is None else max(1, min(n, budget))

    for r in sorted(running, key=lambda r: _pending(r) > 1):
        if len(out.batch) >= cfg.max_batch_size or (budget is not None and budget < 1):
            break
        n = tokens_for(r)
        out.batch.append(scheduler_pb2.Assignment(request_id=r.request_id, device_id=r.device_id, tokens=n))
        budget = None if budget is None else budget - n

    admitted: dict[int, int] = {}
    for rid in out.preempt:
        victim = next(r for r in request.queue if r.request_id == rid)
        admitted[victim.device_id] = admitted.get(victim.device_id, 0) - 1
    for r in waiting:
        if len(out.batch) >= cfg.max_batch_size or (budget is not None and budget < 1):
            break
        device = _place(state, cfg.scheduler_type, admitted)
        if device is None:
            break  # no device can take more work this step; later arrivals must not jump the queue
        admitted[device] = admitted.get(device, 0) + 1
        n = tokens_for(r)
        out.batch.append(scheduler_pb2.Assignment(request_id=r.request_id, device_id=device, tokens=n))
        budget = None if budget is None else budget - n
    return out
