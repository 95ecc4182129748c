"""What the engine asks a scheduler once per step, what it gets back, and the in-core policy.

The messages mirror `tritium.plugin.v1.scheduler` (QueuedRequest, DeviceLoad, Assignment, preempt) field
for field, so a scheduler-plugin client is a thin translation: `ScheduleSnapshot` → ScheduleRequest,
ScheduleResponse → `ScheduleDecision`. One addition the engine needs for chunked prefill and for
resuming preempted requests: `QueuedRequest.pending_tokens`, the tokens that must enter the KV cache
before the request can sample again (its whole history after a preemption, the rest of its prompt
during prefill, 1 while decoding).

`InCorePolicy` is the default when no scheduler plugin is configured: running requests first
(decodes before prefill chunks), then waiting ones by priority then arrival, each prefill chunk at most
`prefill_chunk` tokens and the whole step at most `max_batch_tokens`; optionally a higher-priority
arrival preempts the least important running request when the batch is full. Placement of a new
request: `round_robin` cycles over the devices with room; `load_aware` picks the least loaded one and
sends nothing to a device at or above `load_threshold` while another is below it; `energy` packs work
onto the devices already busy, most efficient first (`DeviceLoad.efficiency`), opening an idle device
only when the busy ones are full; `latency` picks the device with the lowest expected step time with
one more sequence (`DeviceLoad.step_us` per running sequence times running + 1; a device not measured
yet counts as the average of the measured ones; none measured: the shortest queue). The `basic`
scheduler plugin implements the same four policies over the proto messages
(plugins/scheduler_basic/policies.py); `to_proto`/`from_proto` below translate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

PlacementPolicy = Literal["round_robin", "load_aware", "energy", "latency"]


@dataclass(frozen=True)
class QueuedRequest:
    """One live request as the scheduler sees it (ids and counters only, never text)."""

    request_id: int
    prompt_tokens: int
    processed_tokens: int  # tokens in its KV cache now
    pending_tokens: int  # tokens to feed before it samples again (>= 1)
    generated_tokens: int
    max_tokens: int  # 0 = until end of sequence or a full context
    priority: int
    running: bool  # holds a KV cache on `device_id`
    device_id: int  # -1 when not running
    arrival_us: int


@dataclass(frozen=True)
class DeviceLoad:
    """One backend instance: how many sequences it holds and how many it may hold."""

    device_id: int
    running: int
    capacity: int
    available: bool = True
    efficiency: float = 1.0  # relative work per joule (energy placement)
    step_us: float = 0.0  # recent step duration on this device; 0 = unknown (latency placement)

    @property
    def load(self) -> float:
        return self.running / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class ScheduleSnapshot:
    """The engine's state at a step boundary: every live request in arrival order, every device."""

    step_id: int
    queue: list[QueuedRequest]
    devices: list[DeviceLoad]
    max_batch_tokens: int  # 0 = no limit


@dataclass(frozen=True)
class Assignment:
    """Run `tokens` of the request's pending tokens on `device_id` in this step."""

    request_id: int
    device_id: int
    tokens: int


@dataclass
class ScheduleDecision:
    """The next step: the batch (at most max_batch_size entries) and the running requests to preempt."""

    step_id: int
    batch: list[Assignment] = field(default_factory=list)
    preempt: list[int] = field(default_factory=list)


class SchedulePolicy(Protocol):
    """Anything that picks a step's batch; a scheduler-plugin client implements the same method."""

    def schedule(self, snapshot: ScheduleSnapshot) -> ScheduleDecision: ...


@dataclass
class InCorePolicy:
    """Continuous batching with chunked prefill, priorities, optional preemption and device placement."""

    max_batch_size: int = 8
    prefill_chunk: int = 64
    preempt_enabled: bool = False
    placement: PlacementPolicy = "load_aware"
    load_threshold: float = 0.8
    device_affinity: str = "auto"  # or comma-separated ids of the devices new requests may use
    _rr_next: int = 0

    def schedule(self, snapshot: ScheduleSnapshot) -> ScheduleDecision:
        """Pick the batch; see the module docstring for the order and limits."""
        out = ScheduleDecision(step_id=snapshot.step_id)
        budget = snapshot.max_batch_tokens or None
        order = sorted(snapshot.queue, key=lambda r: (-r.priority, r.arrival_us, r.request_id))
        running = [r for r in order if r.running]
        waiting = [r for r in order if not r.running]

        if self.preempt_enabled:
            running = self._preempt(running, waiting, out)

        # Decodes before prefill chunks: a running decode never waits behind a long prompt.
        for r in sorted(running, key=lambda r: r.pending_tokens > 1):
            if len(out.batch) >= self.max_batch_size or (budget is not None and budget < 1):
                break
            tokens = self._chunk(r, budget)
            out.batch.append(Assignment(r.request_id, r.device_id, tokens))
            budget = None if budget is None else budget - tokens

        # Sequences each device gains this step (negative: preempted requests leave it).
        admitted: dict[int, int] = {}
        for rid in out.preempt:
            victim = next(r for r in snapshot.queue if r.request_id == rid)
            admitted[victim.device_id] = admitted.get(victim.device_id, 0) - 1
        for r in waiting:
            if len(out.batch) >= self.max_batch_size or (budget is not None and budget < 1):
                break
            device = self._place(snapshot.devices, admitted)
            if device is None:
                break  # no device takes new work now; later arrivals must not jump the queue
            admitted[device] = admitted.get(device, 0) + 1
            tokens = self._chunk(r, budget)
            out.batch.append(Assignment(r.request_id, device, tokens))
            budget = None if budget is None else budget - tokens
        return out

    def _chunk(self, r: QueuedRequest, budget: int | None) -> int:
        tokens = min(r.pending_tokens, self.prefill_chunk)
        return tokens if budget is None else max(1, min(tokens, budget))

    def _preempt(self, running: list[QueuedRequest], waiting: list[QueuedRequest],
                 out: ScheduleDecision) -> list[QueuedRequest]:
        """Make room in a full batch for each waiting request (best first) that outranks the least
        important running request (lowest priority, latest arrival), preempting as many as needed;
        return the running requests that stay."""
        kept = list(running)
        taken = len(kept)
        for w in waiting:
            while taken >= self.max_batch_size:
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

    def _place(self, devices: list[DeviceLoad], admitted: dict[int, int]) -> int | None:
        """Device for a newly admitted request, or None when every device is full or over threshold."""
        affinity = self.device_affinity
        allowed = None if affinity == "auto" else {int(x) for x in affinity.split(",")}
        usable = [d for d in devices if d.available and (allowed is None or d.device_id in allowed)]
        if not usable:
            return None

        def running(d: DeviceLoad) -> int:
            return d.running + admitted.get(d.device_id, 0)

        if self.placement == "round_robin":
            for _ in range(len(usable)):
                d = usable[self._rr_next % len(usable)]
                self._rr_next += 1
                if not d.capacity or running(d) < d.capacity:
                    return d.device_id
            return None

        def load(d: DeviceLoad) -> float:
            return running(d) / d.capacity if d.capacity else 0.0

        if self.placement in ("energy", "latency"):
            open_ = [d for d in usable if not d.capacity or running(d) < d.capacity]
            if not open_:
                return None
            if self.placement == "energy":
                def efficiency(d: DeviceLoad) -> float:
                    return d.efficiency if d.efficiency > 0 else 1.0

                return min(open_, key=lambda d: (running(d) == 0, -efficiency(d), -running(d),
                                                 d.device_id)).device_id

            known = [d.step_us / max(d.running, 1) for d in open_ if d.step_us > 0]
            default = sum(known) / len(known) if known else 1.0  # not measured yet: the average

            def expected_us(d: DeviceLoad) -> float:
                per_seq = d.step_us / max(d.running, 1) if d.step_us > 0 else default
                return per_seq * (running(d) + 1)

            return min(open_, key=lambda d: (expected_us(d), load(d), d.device_id)).device_id

        # Devices at or above the threshold get new work only when every device is (a single device
        # must still fill its batch); a full device gets none.
        open_ = [d for d in usable if not d.capacity or running(d) < d.capacity]
        if not open_:
            return None
        return min(open_, key=lambda d: (load(d) >= self.load_threshold, load(d), d.device_id)).device_id


def to_proto(snapshot: ScheduleSnapshot, prefill_chunk: int = 0) -> Any:
    """The snapshot as a `tritium.plugin.v1.ScheduleRequest` (what a scheduler plugin receives)."""
    from tritium.protos.tritium.plugin.v1 import scheduler_pb2

    req = scheduler_pb2.ScheduleRequest(step_id=snapshot.step_id, max_batch_tokens=snapshot.max_batch_tokens,
                                        prefill_chunk=prefill_chunk)
    for r in snapshot.queue:
        req.queue.add(request_id=r.request_id, prompt_tokens=r.prompt_tokens,
                      processed_tokens=r.processed_tokens, pending_tokens=r.pending_tokens,
                      generated_tokens=r.generated_tokens, max_tokens=r.max_tokens, priority=r.priority,
                      running=r.running, device_id=r.device_id, arrival_us=r.arrival_us)
    for d in snapshot.devices:
        req.devices.add(device_id=d.device_id, load=d.load, running=d.running, capacity=d.capacity,
                        available=d.available, efficiency=d.efficiency, step_us=d.step_us)
    return req


def from_proto(response: Any) -> ScheduleDecision:
    """A `tritium.plugin.v1.ScheduleResponse` as the engine's ScheduleDecision."""
    return ScheduleDecision(
        step_id=int(response.step_id),
        batch=[Assignment(int(a.request_id), int(a.device_id), int(a.tokens)) for a in response.batch],
        preempt=[int(x) for x in response.preempt])
