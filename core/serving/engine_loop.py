"""The continuous-batching engine: requests join and leave the running batch at token boundaries.

One engine thread runs steps. Each step (1) takes new submissions and cancellations — a cancelled
request's KV cache is freed here, (2) asks the scheduling policy for the batch from a small snapshot
(`scheduling.py`), (3) frees the KV of preempted requests, (4) calls `runtime.step` once per device for
the whole batch — a decode feeds 1 token, a prefill a chunk of its prompt, so a long prompt never stalls
running decodes, (5) samples a token for every request whose pending tokens are all in its KV cache, and
pushes the token and its text delta to the request's handle.

Preemption frees a request's KV cache; when it is scheduled again it re-feeds its whole history
(prompt + generated tokens) before sampling the next token. No random draw happens during that
recomputation, and (config `exact_recompute`, the default) the history is re-fed with the chunk
boundaries it was fed with the first time (a replayed chunk is never larger than the original one):
the runtime's fp16 emulation rounds a multi-token step differently from single-token steps, so the
same boundaries give bit-identical KV entries, and a greedy (or seeded) request yields the same tokens
as an uninterrupted run. The price: recomputing k decoded tokens takes k steps (batched with the other
requests' work); with exact_recompute off the history is re-fed in prefill chunks, which is exact only
when the runtime's logits do not depend on step boundaries (f32 KV).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tritium.core.engine.generate import check_context, context_size
from tritium.core.errors import TokenizerError
from tritium.core.sampling import SampledToken, Sampler, SamplingParams
from tritium.core.serving.errors import EngineStoppedError, QueueFullError
from tritium.core.serving.output_tracker import OutputTracker
from tritium.core.serving.request_stream import RequestHandle, RequestOutput
from tritium.core.serving.scheduling import (
    DeviceLoad,
    InCorePolicy,
    QueuedRequest,
    ScheduleDecision,
    SchedulePolicy,
    ScheduleSnapshot,
)
from tritium.core.serving.serving_config import ServingConfig

log = logging.getLogger("tritium.serving")

IDLE_POLL_S = 0.01  # how long the loop waits when the policy ran nothing although requests are live


@dataclass
class _Request:
    """Engine-side state of one request (touched by the engine thread only, after submission)."""

    id: int
    handle: RequestHandle
    params: SamplingParams
    sampler: Sampler
    tracker: OutputTracker
    history: list[int]  # prompt then generated ids
    n_prompt: int
    priority: int
    arrival_us: int
    seq: Any = None  # the runtime Sequence holding its KV cache, None when not running
    device: int = -1
    n_fed: int = 0  # tokens of `history` in the KV cache
    chunks: list[int] = field(default_factory=list)  # sizes of the feeds that built the KV cache
    replay: deque[int] = field(default_factory=deque)  # after a preemption: the chunks to re-feed

    @property
    def pending(self) -> int:
        return len(self.history) - self.n_fed


@dataclass
class EngineCounters:
    """What the engine has done since it started (for /health and tests)."""

    steps: int = 0
    runtime_calls: int = 0
    tokens_fed: int = 0
    tokens_generated: int = 0
    continued_tokens: int = 0  # of those, chosen by the backend in continuations (decode_steps)
    preemptions: int = 0
    cancelled: int = 0
    finished: int = 0
    step_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))  # sequences per step
    step_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # wall time per step
    # (monotonic time, tokens_generated) after each step, for a recent tokens/s
    token_marks: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))


class ServingEngine:
    """Continuous batching over one runtime per device (see the module docstring).

    `runtimes[i]` is device i: it needs `new_sequence()` and `step(batch) -> list[logits]`, and may have
    `free_sequence(seq)` (called when a request's KV cache is released) and `n_ctx`.
    Call `start()` for the engine thread, or drive it with `step()` (tests, deterministic replays).
    """

    def __init__(self, model: Any, runtimes: Sequence[Any], config: ServingConfig | None = None,
                 policy: SchedulePolicy | None = None) -> None:
        if not runtimes:
            raise ValueError("runtimes: expected at least one runtime (device)")
        self.model = model
        self.runtimes = list(runtimes)
        self.config = (config or ServingConfig()).validated()
        self.n_ctx = min(context_size(model, rt) for rt in self.runtimes)
        cfg = self.config
        self.policy: SchedulePolicy = policy or InCorePolicy(
            max_batch_size=cfg.max_batch_size, prefill_chunk=cfg.prefill_chunk,
            preempt_enabled=cfg.preempt_enabled, placement=cfg.scheduler_type,  # type: ignore[arg-type]
            load_threshold=cfg.load_threshold, device_affinity=cfg.device_affinity)
        self.counters = EngineCounters()
        self._cond = threading.Condition()
        self._inbox: list[_Request] = []
        self._cancel_ids: set[int] = set()
        self._live: dict[int, _Request] = {}
        self._n_waiting = 0  # live requests without KV cache, as of the last step (read under _cond)
        self._n_running = 0
        self._ids = itertools.count(1)
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Device changes while serving (hot plug), applied by the engine thread at a step boundary.
        self._available = [True] * len(self.runtimes)
        self._new_devices: list[Any] = []
        self._removals: dict[int, threading.Event] = {}
        self._step_us = [0.0] * len(self.runtimes)  # recent step duration per device (EMA)

    # ---- client side (any thread) -------------------------------------------------------------------
    def submit(self, prompt_ids: Sequence[int], params: SamplingParams, *,
               priority: int = 0) -> RequestHandle:
        """Queue one request; see `submit_many`."""
        return self.submit_many([(prompt_ids, params)], priority=priority)[0]

    def submit_many(self, requests: Sequence[tuple[Sequence[int], SamplingParams]], *,
                    priority: int = 0) -> list[RequestHandle]:
        """Queue several requests at once, all or none.

        Raises before queuing anything: SamplingError (invalid params), TokenizerError (empty prompt or
        ids outside the vocabulary), ContextOverflowError (prompt + max_tokens beyond the context),
        QueueFullError (the admission queue cannot take them all), EngineStoppedError.
        """
        prepared = []
        for prompt_ids, params in requests:
            params.validate()
            ids = [int(t) for t in prompt_ids]
            if not ids:
                raise TokenizerError("prompt: it encodes to no tokens")
            n_vocab = self.model.tokenizer.n_vocab
            bad = [t for t in ids if not 0 <= t < n_vocab]
            if bad:
                raise TokenizerError(
                    f"prompt: token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})")
            check_context(len(ids), params.max_tokens, self.n_ctx)
            prepared.append((ids, params))
        handles = []
        with self._cond:
            if self._stopping:
                raise EngineStoppedError("the engine is shutting down and accepts no new request")
            waiting = self._n_waiting + len(self._inbox)
            if waiting + len(prepared) > self.config.max_queue:
                raise QueueFullError(
                    f"the admission queue is full ({waiting} waiting, at most {self.config.max_queue}); "
                    f"retry in {self.config.retry_after_s} s", self.config.retry_after_s)
            arrival = int((time.monotonic() - self._t0) * 1e6)
            for ids, params in prepared:
                rid = next(self._ids)
                handle = RequestHandle(rid, len(ids), self._on_cancel)
                self._inbox.append(_Request(
                    id=rid, handle=handle, params=params, sampler=Sampler(params),
                    tracker=OutputTracker(self.model, params, len(ids), self.n_ctx),
                    history=list(ids), n_prompt=len(ids), priority=priority, arrival_us=arrival))
                handles.append(handle)
            self._cond.notify_all()
        return handles

    def load(self) -> dict[str, int]:
        """Waiting and running requests as of the last step, plus counters (for /health)."""
        with self._cond:
            return {"waiting": self._n_waiting + len(self._inbox), "running": self._n_running,
                    "max_queue": self.config.max_queue, "steps": self.counters.steps,
                    "tokens_generated": self.counters.tokens_generated,
                    "preemptions": self.counters.preemptions, "cancelled": self.counters.cancelled,
                    "finished": self.counters.finished}

    def _on_cancel(self, request_id: int) -> None:
        with self._cond:
            self._cancel_ids.add(request_id)
            self._cond.notify_all()

    # ---- the engine thread --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (idempotent; an engine stopped before may be started again)."""
        if self._thread is None:
            with self._cond:
                self._stopping = False
            self._thread = threading.Thread(target=self._run, name="tritium-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine thread; every live request ends with finish_reason "cancelled"."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._absorb_inbox()
        for r in list(self._live.values()):
            self._end(r, RequestOutput(None, "", finish_reason="cancelled",
                                       error="the server is shutting down"))

    def _run(self) -> None:
        self._bind_compute_threads()
        while True:
            with self._cond:
                while not (self._stopping or self._inbox or self._cancel_ids or self._live
                           or self._new_devices or self._removals):
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                ran = self.step()
            except Exception as e:  # a policy or bookkeeping bug: fail the live requests, keep serving
                log.exception("engine step failed")
                for r in list(self._live.values()):
                    self._end(r, RequestOutput(None, "", finish_reason="error",
                                               error=f"engine step failed: {e}"))
                ran = True
            if not ran:
                with self._cond:
                    self._cond.wait(IDLE_POLL_S)

    def _bind_compute_threads(self) -> None:
        """Give this thread the runtimes' compute thread count. numba's count is per calling thread:
        a Runtime sets it on the thread that built it, and this thread would otherwise use every core,
        which is up to 20x slower on a busy machine (measured: 24 tokens 1.36 s instead of 0.07 s)."""
        counts = [getattr(rt, "threads", None) for rt in self.runtimes]
        if all(isinstance(n, int) and n > 0 for n in counts):
            import numba

            numba.set_num_threads(min(min(counts), numba.config.NUMBA_NUM_THREADS))

    def step(self) -> bool:
        """Run one engine step; return False when there was nothing to run."""
        t_step = time.perf_counter()
        self._absorb_inbox()
        self._apply_device_changes()
        if not self._live:
            self._publish_load()
            return False
        decision = self.policy.schedule(self._snapshot())
        for rid in decision.preempt:
            r = self._live.get(rid)
            if r is not None and r.seq is not None:
                self._preempt(r)
        batch = self._admit(decision)
        if not batch:
            self._publish_load()
            return bool(decision.preempt)
        by_device: dict[int, list[tuple[_Request, int]]] = {}
        for r, device, tokens in batch:
            if r.seq is None:
                r.seq, r.device, r.n_fed = self.runtimes[device].new_sequence(), device, 0
            by_device.setdefault(device, []).append((r, tokens))
        for device, items in by_device.items():
            self._run_device(device, items)
        self.counters.steps += 1
        self.counters.step_sizes.append(len(batch))
        self.counters.step_seconds.append(time.perf_counter() - t_step)
        self.counters.token_marks.append((time.monotonic(), self.counters.tokens_generated))
        self._publish_load()
        return True

    # ---- devices while serving ----------------------------------------------------------------------
    def add_device(self, runtime: Any) -> None:
        """Hot plug: `runtime` becomes a new device at the next step boundary (any thread)."""
        n_ctx = context_size(self.model, runtime)
        if n_ctx < self.n_ctx:
            raise ValueError(
                f"the new device's context ({n_ctx}) is shorter than the engine's ({self.n_ctx})")
        with self._cond:
            self._new_devices.append(runtime)
            self._cond.notify_all()
        if self._thread is None:
            self._apply_device_changes()

    def remove_device(self, device: int, timeout: float = 60.0) -> bool:
        """Hot unplug: device `device` takes no new work, and the requests on it are preempted at the next
        step boundary and recompute elsewhere (same tokens for greedy/seeded requests). Returns whether
        that happened within `timeout` (any thread; without the engine thread it happens here)."""
        with self._cond:
            if not 0 <= device < len(self.runtimes) or not self._available[device]:
                raise ValueError(f"device {device}: no such available device")
            if sum(self._available) - len(self._removals) <= 1:
                raise ValueError(f"device {device} is the last available device; add another first")
            done = self._removals.setdefault(device, threading.Event())
            self._cond.notify_all()
        if self._thread is None:
            self._apply_device_changes()
        return done.wait(timeout)

    def devices(self) -> list[dict[str, Any]]:
        """Each device: index, whether it takes work, sequences running on it, recent step time."""
        with self._cond:
            running = [0] * len(self.runtimes)
            for r in list(self._live.values()):
                if r.seq is not None and 0 <= r.device < len(running):
                    running[r.device] += 1
            return [{"device": i, "available": self._available[i], "running": running[i],
                     "step_us": self._step_us[i]} for i in range(len(self.runtimes))]

    def _apply_device_changes(self) -> None:
        with self._cond:
            new, self._new_devices = self._new_devices, []
            removals = dict(self._removals)
        for rt in new:
            self.runtimes.append(rt)
            self._available.append(True)
            self._step_us.append(0.0)
            log.info("device %d added", len(self.runtimes) - 1)
        for device, done in removals.items():
            self._available[device] = False
            for r in list(self._live.values()):
                if r.seq is not None and r.device == device:
                    self._preempt(r)  # recomputed on another device when it is scheduled again
            with self._cond:
                self._removals.pop(device, None)
            log.info("device %d removed", device)
            done.set()

    def _absorb_inbox(self) -> None:
        with self._cond:
            new, self._inbox = self._inbox, []
            cancelled, self._cancel_ids = self._cancel_ids, set()
        for r in new:
            self._live[r.id] = r
        for rid in cancelled:
            r = self._live.get(rid)
            if r is not None:
                self.counters.cancelled += 1
                self._end(r, RequestOutput(None, "", finish_reason="cancelled", prompt_tokens=r.n_prompt,
                                           completion_tokens=len(r.history) - r.n_prompt))

    def _snapshot(self) -> ScheduleSnapshot:
        queue = [QueuedRequest(
            request_id=r.id, prompt_tokens=r.n_prompt, processed_tokens=r.n_fed, pending_tokens=r.pending,
            generated_tokens=len(r.history) - r.n_prompt, max_tokens=r.params.max_tokens or 0,
            priority=r.priority, running=r.seq is not None, device_id=r.device, arrival_us=r.arrival_us)
            for r in sorted(self._live.values(), key=lambda r: r.arrival_us)]
        running = [0] * len(self.runtimes)
        for r in self._live.values():
            if r.seq is not None:
                running[r.device] += 1
        devices = [DeviceLoad(i, running[i], self.config.max_batch_size, available=self._available[i],
                              efficiency=float(getattr(self.runtimes[i], "efficiency", 1.0) or 1.0),
                              step_us=self._step_us[i])
                   for i in range(len(self.runtimes))]
        return ScheduleSnapshot(self.counters.steps, queue, devices, self.config.max_batch_tokens)

    def _admit(self, decision: ScheduleDecision) -> list[tuple[_Request, int, int]]:
        """The decision's batch, checked: live requests only, once each, on the device holding their KV,
        1..pending tokens, at most max_batch_size entries. Anything else is dropped with a warning."""
        batch, seen = [], set()
        for a in decision.batch:
            r = self._live.get(a.request_id)
            problem = None
            if r is None or a.request_id in seen:
                problem = "unknown or repeated request"
            elif not 0 <= a.device_id < len(self.runtimes):
                problem = f"device {a.device_id} does not exist"
            elif r.seq is None and not self._available[a.device_id]:
                problem = f"device {a.device_id} takes no new work"
            elif r.seq is not None and a.device_id != r.device:
                problem = f"its KV cache is on device {r.device}, not {a.device_id}"
            elif len(batch) >= self.config.max_batch_size:
                problem = f"the batch already holds max_batch_size={self.config.max_batch_size}"
            if problem:
                log.warning("scheduler assignment %s ignored: %s", a, problem)
                continue
            seen.add(a.request_id)
            tokens = max(1, min(int(a.tokens), r.pending))
            if r.replay:  # recomputing after a preemption: keep the original chunk boundaries
                tokens = min(tokens, r.replay[0])
            batch.append((r, a.device_id, tokens))
        return batch

    def _run_device(self, device: int, items: list[tuple[_Request, int]]) -> None:
        feeds = [(r.seq, r.history[r.n_fed:r.n_fed + tokens]) for r, tokens in items]
        runtime = self.runtimes[device]
        extra = self._continuation_steps(runtime, items)
        t0 = time.perf_counter()
        try:
            conts = [None] * len(items)
            if extra:
                conts = [None if r.params.argmax_only else r.sampler.continuation(r.history, r.n_prompt)
                         for r, _ in items]
                outs = runtime.step_continue(feeds, [extra] * len(feeds), items[0][0].tracker.enders, conts)
                chosen, rows = [c for c, _ in outs], [lg for _, lg in outs]
            else:
                chosen, rows = [[] for _ in feeds], runtime.step(feeds)
            us = (time.perf_counter() - t0) * 1e6 / (1 + extra)  # per model step
            prev = self._step_us[device]
            self._step_us[device] = us if prev == 0 else 0.8 * prev + 0.2 * us
            self.counters.runtime_calls += 1
            if len(rows) != len(feeds):
                raise RuntimeError(f"runtime.step returned {len(rows)} logit rows for {len(feeds)} sequences")
        except Exception as e:
            log.exception("runtime step on device %d failed", device)
            for r, _ in items:
                self._end(r, RequestOutput(None, "", finish_reason="error",
                                           error=f"runtime step failed: {e}"))
            return
        for (r, tokens), logits, continued, cont in zip(items, rows, chosen, conts, strict=True):
            r.n_fed += tokens
            r.chunks.append(tokens)
            if r.replay:
                r.replay[0] -= tokens
                if r.replay[0] <= 0:
                    r.replay.popleft()
            self.counters.tokens_fed += tokens
            if r.pending == 0 and not self._take_continued(r, continued, cont):
                self._sample(r, logits)

    def _continuation_steps(self, runtime: Any, items: list[tuple[_Request, int]]) -> int:
        """How many decode steps the runtime may add to this call (config decode_steps), choosing each
        token itself (the argmax, or a draw of the request's own sampler and generator): only for a
        backend that offers it, when every request of the call decodes (feeds its last sampled
        token: a prefill call stays one step, for the time to first token) with the same stop ids,
        and while no request waits (it would wait for the whole call). At most
        what the request closest to its token limit may still generate after this call's own token,
        so that no request ends by length mid-call."""
        if self.config.decode_steps < 2 or not hasattr(runtime, "step_continue"):
            return 0
        if self._inbox or self._cancel_ids or any(r.seq is None for r in self._live.values()):
            return 0
        enders = items[0][0].tracker.enders
        steps = self.config.decode_steps - 1
        for r, tokens in items:
            decoding = tokens == r.pending == 1 and len(r.history) > r.n_prompt and not r.replay
            if not decoding or r.tracker.enders != enders:
                return 0
            steps = min(steps, r.tracker.tokens_left() - 1)
        return max(steps, 0)

    def _take_continued(self, r: _Request, tokens: list[int], cont: Any) -> bool:
        """Deliver the tokens a continuation chose for `r` (each fed but a final stop token), with
        their logprobs when it asked for them; True when the request ended with one of them."""
        logprobs = cont.logprobs if cont is not None else []
        for i, token in enumerate(tokens):
            self.counters.continued_tokens += 1
            lp = logprobs[i] if i < len(logprobs) else SampledToken(token)  # as Sampler.choose gives
            if self._emit(r, token, lp.logprob, lp.top_logprobs):
                return True
            r.n_fed += 1  # the backend fed it: one step of its own
            r.chunks.append(1)
            self.counters.tokens_fed += 1
        return False

    def _sample(self, r: _Request, logits: Any) -> None:
        choice = r.sampler.choose(logits, r.history, n_prompt=r.n_prompt)
        self._emit(r, choice.token_id, choice.logprob, choice.top_logprobs)

    def _emit(self, r: _Request, token: int, logprob: Any, top_logprobs: Any) -> bool:
        """Append a generated token to `r` and push its event; True when it ended the request."""
        r.history.append(token)
        self.counters.tokens_generated += 1
        text, finish = r.tracker.accept(token)
        event = RequestOutput(token, text, logprob, top_logprobs, finish,
                              prompt_tokens=r.n_prompt, completion_tokens=len(r.history) - r.n_prompt)
        if finish is None:
            r.handle.push(event)
            return False
        self.counters.finished += 1
        self._end(r, event)
        return True

    def _end(self, r: _Request, event: RequestOutput) -> None:
        """Remove the request, free its KV cache, deliver its last event."""
        self._live.pop(r.id, None)
        self._release(r)
        r.handle.push(event)

    def _preempt(self, r: _Request) -> None:
        """Free a running request's KV cache; it is recomputed, chunk for chunk, when scheduled again."""
        replay = deque(r.chunks) if self.config.exact_recompute else deque()
        self._release(r)
        r.replay = replay
        self.counters.preemptions += 1

    def _release(self, r: _Request) -> None:
        if r.seq is not None:
            free = getattr(self.runtimes[r.device], "free_sequence", None)
            if free is not None:
                try:
                    free(r.seq)
                except Exception:
                    log.exception("freeing the KV cache of request %d failed", r.id)
        r.seq, r.device, r.n_fed = None, -1, 0
        r.chunks, r.replay = [], deque()

    def _publish_load(self) -> None:
        running = sum(1 for r in self._live.values() if r.seq is not None)
        with self._cond:
            self._n_running = running
            self._n_waiting = len(self._live) - running
