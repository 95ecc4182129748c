"""Core-side clients of plugin kinds, with the same shape of calls as the in-process engine.

`BackendClient` mirrors `tritium.core.compute.Runtime`: `new_sequence()`, `eval(seq, tokens)`,
`step(batch)`, `truncate(seq, n)`, `release(seq)`, `n_ctx` — but the model runs in a backend plugin
process. It is a drop-in device for the serving engine (`ServingEngine(model, [client])`).
It keeps every sequence's committed tokens, so when the plugin dies mid-step (or is replaced, or the
calls move to a fallback), the supervisor's retry lands on a fresh instance that this client first
re-initialises (Init + LoadModel) and then catches up by replaying each sequence's tokens before
the retried Step. The replay keeps the original step boundaries (one replay Step per original chunk,
the batch's sequences side by side), because the engine's fp16 emulation of llama.cpp rounds a
single-token step differently from a multi-token one: replayed KV entries are bit-identical to the
lost ones, so no accepted request is lost and greedy output is unchanged.

`SchedulerClient` wraps one Schedule call per engine step.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import numpy as np
from tritium.protos.tritium.plugin.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from tritium.sdk import shm
from tritium.sdk.sampling import continuation_sampling, sampled_token, set_rng_state

from .errors import PluginProtocolError
from .supervisor import Instance, Supervisor

if TYPE_CHECKING:
    from tritium.core.sampling.params import SamplingParams
    from tritium.core.sampling.sampler import Continuation

_MAX_VIEWS = 256  # validated handle views kept (a full cache is simply cleared)


@dataclass(frozen=True)
class LoadArgs:
    """What LoadModel was called with, replayed on every new instance."""

    path: str
    format: str
    n_ctx: int
    threads: int
    kv_dtype: str
    max_sequences: int
    max_logit_rows: int


@dataclass
class _OnInstance:
    """What one plugin instance holds for this client: tokens per sequence (its KV cache)."""

    inst: Instance
    held: dict[int, int] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)  # its shared-memory segments this client mapped


GREEDY_CAPABILITY = "greedy_steps"  # Info capability of backends that serve SequenceInput.greedy_steps
SAMPLED_CAPABILITY = "sampled_steps"  # ... and of those that also serve SequenceInput.sampling

# A sequence's continuation in a step_continue call: (steps, stop ids, its sampler's Continuation or None)
_Ask = tuple[int, frozenset[int], "Continuation | None"]


class BackendClient:
    """A model running in backend plugin `plugin` (supervised by `supervisor`). Thread-safe.

    Each sequence runs on the instance that was current when it started (it holds a lease on it, see
    Supervisor.pin): after a hot replace, sequences in flight finish on the old process while new ones
    start on the new one. A sequence whose instance died moves to the current one by replay.

    `copy_logits=False` makes step() return read-only views of the shared logits segment instead of
    copies: valid until this client's next step (the plugin writes the next logits there), which is
    how the engine uses them (it samples each row before the next step).
    """

    def __init__(
        self,
        supervisor: Supervisor,
        plugin: str,
        *,
        config: common_pb2.BackendConfig | None = None,
        step_timeout_s: float = 120.0,
        load_timeout_s: float = 600.0,
        fastlane: bool = True,
        copy_logits: bool = True,
    ) -> None:
        self._sup = supervisor
        self.fastlane = fastlane  # send Step by the instance's fast lane when it has one
        self.copy_logits = copy_logits
        self.plugin = plugin
        self._config = config or common_pb2.BackendConfig()
        self._step_timeout = step_timeout_s
        self._load_timeout = load_timeout_s
        self._lock = threading.RLock()
        self._load: LoadArgs | None = None
        self.model: backend_pb2.ModelInfo | None = None
        self.interpretation: list[str] = []
        self._history: dict[int, list[int]] = {}  # committed tokens of each sequence
        self._chunks: dict[int, list[int]] = {}  # lengths of the steps that committed them, in order
        self._on: dict[str, _OnInstance] = {}  # instance key -> what it holds
        self._home: dict[int, str] = {}  # sequence -> key of the instance it runs on (holds a lease)
        self._ids = itertools.count(1)
        self._step_ids = itertools.count(1)
        self._segments = shm.SegmentCache(readonly=True)
        self._views: dict[tuple, np.ndarray] = {}  # validated logits views, by handle (_read_outputs)
        self.device: backend_pb2.DeviceInfo | None = None
        self.restores = 0  # times the model was loaded on a further instance (restart, fallback, replace)
        self.replayed_steps = 0  # Step calls spent replaying committed tokens on another instance

    # ---- instance state -----------------------------------------------------------------------
    def _stub(self, inst: Instance) -> backend_pb2_grpc.BackendStub:
        return inst.stub(backend_pb2_grpc.BackendStub)

    def _call_step(self, inst: Instance, req: backend_pb2.StepRequest) -> backend_pb2.StepResponse:
        """One Step call: by the fast lane when negotiated (and enabled here), else by gRPC."""
        lane = getattr(inst.process, "fastlane", None) if self.fastlane else None
        if lane is not None:
            resp = lane.call("Step", req, backend_pb2.StepResponse, self._step_timeout)
            if resp is not None:
                return resp
        return self._stub(inst).Step(req, timeout=self._step_timeout)

    def _ensure(self, inst: Instance) -> _OnInstance:
        """Bring `inst` to this client's state (Init, LoadModel) the first time it is used."""
        on = self._on.get(inst.key)
        if on is not None:
            return on
        stub = self._stub(inst)
        init = stub.Init(backend_pb2.InitRequest(config=self._config), timeout=30.0)
        self.device = init.device
        if self._load is not None:
            a = self._load
            resp = stub.LoadModel(
                backend_pb2.LoadModelRequest(
                    path=a.path,
                    format=a.format,
                    n_ctx=a.n_ctx,
                    threads=a.threads,
                    kv_dtype=a.kv_dtype,
                    max_sequences=a.max_sequences,
                    max_logit_rows=a.max_logit_rows,
                ),
                timeout=self._load_timeout,
            )
            if self.model is not None and resp.model.n_vocab != self.model.n_vocab:
                raise PluginProtocolError(
                    inst.name,
                    f"reloaded model has n_vocab {resp.model.n_vocab}, expected {self.model.n_vocab}",
                )
            if self.model is not None:
                self.restores += 1
            self.model = resp.model
            self.interpretation = list(resp.interpretation)
        for key in [k for k, o in self._on.items() if o.inst.dead]:
            self._forget(key)  # instances that are gone
        on = self._on[inst.key] = _OnInstance(inst)
        return on

    def _forget(self, key: str) -> None:
        """Drop what this client holds of instance `key`, its segment mappings included: the pages of
        a dead plugin's logits segment stay resident for as long as someone maps them."""
        on = self._on.pop(key)
        if on.segments:
            for view_key in [k for k in self._views if k[0] in on.segments]:
                del self._views[view_key]
            for name in on.segments:
                self._segments.drop(name)

    def _rehome(self, sid: int, inst: Instance | None) -> None:
        """Move sequence `sid`'s lease to `inst` (None: drop it)."""
        old = self._home.pop(sid, None)
        if old is not None and old in self._on:
            self._sup.unpin(self._on[old].inst)
            self._on[old].held.pop(sid, None)
        if inst is not None:
            self._home[sid] = inst.key
            self._sup.pin(inst)

    # ---- public API ---------------------------------------------------------------------------
    def init(self) -> backend_pb2.DeviceInfo:
        """Initialise the backend's device (also done implicitly by the first call)."""
        with self._lock:
            self._sup.call(self.plugin, self._ensure, method="Init")
            return self.device

    def load_model(
        self,
        path: str,
        *,
        format: str = "",
        n_ctx: int = 0,
        threads: int = 0,
        kv_dtype: str = "",
        max_sequences: int = 64,
        max_logit_rows: int = 0,
    ) -> backend_pb2.ModelInfo:
        """Load a model in the plugin (memory-mapped there); returns its shape facts."""
        with self._lock:
            for sid in list(self._home):
                self._rehome(sid, None)
            # The plugin runs in its package folder, not in our working directory.
            path = os.path.abspath(path)
            self._load = LoadArgs(
                path, format, n_ctx, threads, kv_dtype, max_sequences, max_logit_rows or max_sequences
            )
            for key in list(self._on):  # every instance must load this model
                self._forget(key)
            self.model = None
            self._history.clear()
            self._chunks.clear()
            self._sup.call(self.plugin, self._ensure, method="LoadModel")
            return self.model

    def new_sequence(self) -> int:
        """A new, empty sequence id (it starts existing on the plugin with its first step)."""
        with self._lock:
            sid = next(self._ids)
            self._history[sid] = []
            self._chunks[sid] = []
            return sid

    @property
    def n_ctx(self) -> int | None:
        """Context length per sequence of the loaded model (None before load_model)."""
        return self.model.n_ctx if self.model is not None else None

    def free_sequence(self, seq: int) -> None:
        """Free one sequence (the name the serving engine looks for)."""
        self.release(seq)

    def instance_of(self, seq: int) -> str:
        """Key (`name#generation`) of the plugin process holding the sequence; "" before its first step."""
        return self._home.get(seq, "")

    def n_past(self, seq: int) -> int:
        """Tokens the sequence holds."""
        return len(self._history[seq])

    def truncate(self, seq: int, n: int) -> None:
        """Keep the first n tokens of a sequence (takes effect on the plugin at its next step)."""
        with self._lock:
            hist = self._history[seq]
            if n > len(hist):
                raise ValueError(f"sequence {seq} holds {len(hist)} tokens; cannot truncate to {n}")
            del hist[n:]
            chunks, total = self._chunks[seq], 0
            for i, c in enumerate(chunks):
                if total + c >= n:
                    del chunks[i + 1 :]
                    chunks[i] = n - total
                    break
                total += c
            if chunks and chunks[-1] == 0:
                chunks.pop()
            for on in self._on.values():
                if seq in on.held:
                    on.held[seq] = min(on.held[seq], n)

    def release(self, *seqs: int) -> None:
        """Forget sequences and free their KV cache on the plugin."""
        with self._lock:
            by_inst: dict[str, list[int]] = {}
            for s in seqs:
                key = self._home.get(s)
                if key is not None:
                    by_inst.setdefault(key, []).append(s)
                self._rehome(s, None)
                self._history.pop(s, None)
                self._chunks.pop(s, None)
            for key, ids in by_inst.items():
                on = self._on.get(key)
                if on is None or on.inst.dead:
                    continue
                try:
                    self._stub(on.inst).Cleanup(backend_pb2.CleanupRequest(sequence_ids=ids), timeout=10.0)
                except grpc.RpcError:
                    pass  # the instance is going away; its KV cache goes with it

    def eval(self, seq: int, tokens: list[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens to one sequence; logits [len(tokens), n_vocab] or [1, n_vocab]."""
        return self.step([(seq, tokens)], all_logits=all_logits)[0]

    def step(self, batch: list[tuple[int, list[int]]], *, all_logits: bool = False) -> list[np.ndarray]:
        """One model step for several sequences; returns each one's logits (last token, or every token
        with all_logits) as float32 arrays: owned by the caller, or with copy_logits=False read-only
        views valid until the next step."""
        return [logits for _, logits in self._step(batch, all_logits, None)]

    def step_continue(
        self,
        batch: list[tuple[int, list[int]]],
        greedy_steps: list[int],
        stop_token_ids: Collection[int],
        sampling: list[Continuation | None] | None = None,
    ) -> list[tuple[list[int], np.ndarray]]:
        """step(), then up to greedy_steps[i] tokens for sequence i in the same call (multi-step
        decode: SequenceInput.greedy_steps), each fed unless it is one of stop_token_ids, which ends
        the continuation. Returns per sequence (the chosen tokens, the logits after the last token
        fed). Each token is the raw argmax, or with sampling[i] (Sampler.continuation) what that
        sampler would have chosen step by step. On success its generator continues after the
        backend's last draw and its `logprobs` hold the tokens' log-probabilities when asked for. A
        backend without the capability "greedy_steps" (or "sampled_steps" for a sampled one)
        answers plain steps: no chosen tokens, the continuation untouched.
        """
        stops = frozenset(stop_token_ids)
        samplers = sampling if sampling is not None else [None] * len(batch)
        for what, entries in (("greedy_steps", greedy_steps), ("sampling", samplers)):
            if len(entries) != len(batch):
                raise ValueError(f"{what}: {len(entries)} entries for {len(batch)} sequences")
        asks = [(int(n), stops, sp) for n, sp in zip(greedy_steps, samplers, strict=True)]
        return self._step(batch, False, asks)

    def _step(
        self,
        batch: list[tuple[int, list[int]]],
        all_logits: bool,
        asks: list[_Ask] | None,
    ) -> list[tuple[list[int], np.ndarray]]:
        if self._load is None:
            raise RuntimeError("load_model() first")
        with self._lock:
            for sid, toks in batch:
                if sid not in self._history:
                    raise KeyError(f"unknown sequence {sid}")
                if not toks:
                    raise ValueError(f"sequence {sid}: no tokens to evaluate")
            step_id = next(self._step_ids)
            results: dict[int, tuple[list[int], np.ndarray]] = {}
            # Sequences pinned to a live instance that is no longer current (hot-replaced) finish there.
            retired: dict[str, list[int]] = {}
            for i, (sid, _) in enumerate(batch):
                key = self._home.get(sid)
                on = self._on.get(key) if key else None
                if on is not None and on.inst.retired and not on.inst.dead and on.inst.process.alive():
                    retired.setdefault(key, []).append(i)
            rest = [i for i in range(len(batch)) if not any(i in v for v in retired.values())]
            for key, idx in retired.items():
                sub = [batch[i] for i in idx]
                sub_asks = [asks[i] for i in idx] if asks is not None else None
                try:
                    outs = self._step_on(self._on[key].inst, step_id, sub, all_logits, sub_asks)
                except grpc.RpcError:
                    if not self._on[key].inst.process.alive():
                        rest += idx  # it died while draining: continue on the current instance
                        continue
                    raise
                results.update(zip(idx, outs, strict=True))
            if rest:
                rest.sort()
                sub = [batch[i] for i in rest]
                sub_asks = [asks[i] for i in rest] if asks is not None else None
                outs = self._sup.call(
                    self.plugin,
                    lambda inst: self._step_on(inst, step_id, sub, all_logits, sub_asks),
                    method="Step",
                )
                results.update(zip(rest, outs, strict=True))
            for i, (sid, toks) in enumerate(batch):
                history, chunks = self._history[sid], self._chunks[sid]
                history.extend(toks)
                chunks.append(len(toks))
                chosen, _, out = results[i]
                if chosen:  # chosen tokens were fed one per model step (a stop token is not fed)
                    fed = chosen[:-1] if chosen[-1] in asks[i][1] else chosen
                    history.extend(fed)
                    chunks.extend([1] * len(fed))
                cont = asks[i][2] if asks is not None and chosen else None
                if cont is not None:  # adopted only now that the whole step stands
                    if out.HasField("rng"):
                        set_rng_state(cont.rng, out.rng)
                    pairs = zip(chosen, out.logprobs, strict=False)  # no entries unless asked (checked)
                    cont.logprobs = [sampled_token(t, lp) for t, lp in pairs]
                on = self._on[self._home[sid]]
                on.held[sid] = len(history)
            return [results[i][:2] for i in range(len(batch))]

    def _step_on(
        self,
        inst: Instance,
        step_id: int,
        batch: list[tuple[int, list[int]]],
        all_logits: bool,
        asks: list[_Ask] | None,
    ) -> list[tuple[list[int], np.ndarray, backend_pb2.SequenceOutput]]:
        on = self._ensure(inst)
        for sid, _ in batch:
            if self._home.get(sid) != inst.key:
                self._rehome(sid, inst)
        self._replay(on, step_id, [sid for sid, _ in batch])
        req = backend_pb2.StepRequest(step_id=step_id)
        add = req.batch.add
        caps = inst.process.info.capabilities
        if asks is not None and GREEDY_CAPABILITY not in caps:
            asks = None  # a plain step: the caller samples every token from the logits
        if asks is None:
            for sid, toks in batch:
                add(sequence_id=sid, tokens=toks, n_past=on.held.get(sid, 0), all_logits=all_logits)
        else:
            if SAMPLED_CAPABILITY not in caps:  # sampled sequences take a plain step
                asks = [(0, stops, None) if sp is not None else (n, stops, sp) for n, stops, sp in asks]
            for (sid, toks), (steps, stops, sp) in zip(batch, asks, strict=True):
                item = add(sequence_id=sid, tokens=toks, n_past=on.held.get(sid, 0), greedy_steps=steps,
                           stop_token_ids=sorted(stops) if steps else ())
                if steps and sp is not None:
                    item.sampling.CopyFrom(continuation_sampling(sp))
        resp = self._call_step(inst, req)
        return self._read_outputs(inst, req, resp, batch, all_logits, asks)

    def _pending_chunks(self, on: _OnInstance, sid: int) -> list[list[int]]:
        """The committed chunks of `sid` the instance lacks (the first one may be partial)."""
        held, start, out = on.held.get(sid, 0), 0, []
        hist = self._history[sid]
        for c in self._chunks[sid]:
            end = start + c
            if end > held:
                out.append(hist[max(start, held) : end])
            start = end
        return out

    def _replay(self, on: _OnInstance, step_id: int, sids: list[int]) -> None:
        """Re-run the committed steps of `sids` that the instance lacks, chunk by chunk (module doc)."""
        behind = [sid for sid in sids if on.held.get(sid, 0) < len(self._history[sid])]
        if not behind:  # the usual case: the instance holds everything
            return
        pending = {sid: self._pending_chunks(on, sid) for sid in behind}
        rounds = max(len(c) for c in pending.values())
        for r in range(rounds):
            req = backend_pb2.StepRequest(step_id=step_id)
            for sid, chunks in pending.items():
                if r < len(chunks):
                    req.batch.add(sequence_id=sid, tokens=chunks[r], n_past=on.held.get(sid, 0))
            resp = self._call_step(on.inst, req)
            if len(resp.outputs) != len(req.batch):
                raise PluginProtocolError(
                    on.inst.name, f"Step returned {len(resp.outputs)} outputs for {len(req.batch)} sequences"
                )
            for item, out in zip(req.batch, resp.outputs, strict=True):
                expected = on.held.get(item.sequence_id, 0) + len(item.tokens)
                if out.sequence_id != item.sequence_id or out.n_past != expected:
                    raise PluginProtocolError(
                        on.inst.name,
                        f"replay of sequence {item.sequence_id}: plugin holds {out.n_past} tokens, "
                        f"expected {expected}",
                    )
                on.held[item.sequence_id] = expected
        self.replayed_steps += rounds

    def _read_outputs(
        self,
        inst: Instance,
        req: backend_pb2.StepRequest,
        resp: backend_pb2.StepResponse,
        batch: list[tuple[int, list[int]]],
        all_logits: bool,
        asks: list[_Ask] | None = None,
    ) -> list[tuple[list[int], np.ndarray, backend_pb2.SequenceOutput]]:
        if resp.step_id != req.step_id:
            raise PluginProtocolError(
                inst.name, f"Step answered step_id {resp.step_id} to step {req.step_id}"
            )
        if len(resp.outputs) != len(req.batch):
            raise PluginProtocolError(
                inst.name, f"Step returned {len(resp.outputs)} outputs for {len(req.batch)} sequences"
            )
        n_vocab = self.model.n_vocab
        result = []
        views = self._views
        for i, ((sid, toks), out) in enumerate(zip(batch, resp.outputs, strict=True)):
            if out.sequence_id != sid:
                raise PluginProtocolError(
                    inst.name, f"Step output for sequence {out.sequence_id} where {sid} was expected"
                )
            h = out.logits
            # The plugin answers with the same few handles step after step: each is validated and
            # mapped once (every further line here runs with caches cold after the step's compute).
            key = (h.segment, h.offset, h.nbytes, h.dtype, tuple(h.shape))
            view = views.get(key)
            if view is None:
                rows = len(toks) if all_logits else 1
                try:
                    view = shm.read_tensor(
                        h,
                        self._segments,
                        dtype=common_pb2.DTYPE_F32,
                        shape=(rows, n_vocab),
                        what=f"Step logits of sequence {sid}",
                        copy=False,
                    )
                except shm.TensorHandleError as exc:
                    raise PluginProtocolError(inst.name, str(exc)) from None
                if len(views) >= _MAX_VIEWS:
                    views.clear()
                views[key] = view
                self._on[inst.key].segments.add(h.segment)
            elif view.shape[0] != (len(toks) if all_logits else 1):
                raise PluginProtocolError(
                    inst.name,
                    f"Step logits of sequence {sid}: expected {len(toks)} rows, found {view.shape[0]}",
                )
            chosen = list(out.greedy_tokens)
            fed = 0
            if chosen or asks is not None:
                asked = asks[i] if asks is not None else (0, frozenset(), None)
                fed = self._check_continuation(inst, sid, chosen, asked[:2])
                if chosen and asked[2] is not None:
                    self._check_sampled(inst, sid, chosen, asked[2].params, out)
            expected_past = len(self._history[sid]) + len(toks) + fed
            if out.n_past != expected_past:
                raise PluginProtocolError(
                    inst.name,
                    f"sequence {sid} holds {out.n_past} tokens after Step, expected {expected_past}",
                )
            result.append((chosen, view.copy() if self.copy_logits else view, out))
        return result

    @staticmethod
    def _check_sampled(
        inst: Instance, sid: int, chosen: list[int], params: SamplingParams, out: backend_pb2.SequenceOutput
    ) -> None:
        """PluginProtocolError unless a sampled continuation's answer carries the generator state
        (when it drew) and one logprobs entry per token (when asked), each with the asked top count."""
        if not params.greedy and not out.HasField("rng"):
            raise PluginProtocolError(
                inst.name, f"sequence {sid}: a sampled continuation without its generator state"
            )
        want = 0 if params.logprobs is None else len(chosen)
        top = params.logprobs or 0
        if len(out.logprobs) != want or any(
            len(lp.top_ids) != len(lp.top_logprobs) or len(lp.top_ids) > top for lp in out.logprobs
        ):
            raise PluginProtocolError(
                inst.name, f"sequence {sid}: {len(out.logprobs)} logprobs entries for {want} asked"
            )

    def _check_continuation(
        self, inst: Instance, sid: int, chosen: list[int], asked: tuple[int, frozenset[int]]
    ) -> int:
        """How many of a greedy continuation's tokens were fed; PluginProtocolError when the plugin
        answered more than asked, out-of-vocabulary ids, a stop token before the end, or stopped early
        without one."""
        steps, stops = asked
        if not chosen:
            if steps:
                raise PluginProtocolError(inst.name, f"sequence {sid}: no greedy tokens, {steps} asked")
            return 0
        if len(chosen) > steps:
            raise PluginProtocolError(
                inst.name, f"sequence {sid}: {len(chosen)} greedy tokens, at most {steps} asked"
            )
        n_vocab = self.model.n_vocab
        if min(chosen) < 0 or max(chosen) >= n_vocab:
            raise PluginProtocolError(inst.name, f"sequence {sid}: greedy token ids outside [0, {n_vocab})")
        stopped = chosen[-1] in stops
        if any(t in stops for t in chosen[:-1]) or (len(chosen) < steps and not stopped):
            raise PluginProtocolError(
                inst.name, f"sequence {sid}: greedy continuation {chosen} does not end where it should"
            )
        return len(chosen) - 1 if stopped else len(chosen)

    def close(self) -> None:
        """Release every sequence's lease and unmap the logits segments."""
        with self._lock:
            for sid in list(self._home):
                self._rehome(sid, None)
            self._views.clear()
            self._segments.close()


class SchedulerClient:
    """One Schedule call per engine step, to scheduler plugin `plugin`.

    It is the engine's scheduling policy as well: `schedule(snapshot)` with the engine's
    `ScheduleSnapshot` returns its `ScheduleDecision` (core/serving/scheduling.py translates), so
    `ServingEngine(model, devices, config, policy=SchedulerClient(sup, "basic", prefill_chunk=64))`
    runs each step's placement in the plugin process.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        plugin: str,
        *,
        timeout_s: float = 2.0,
        prefill_chunk: int = 0,
        fastlane: bool = True,
    ) -> None:
        self._sup = supervisor
        self.fastlane = fastlane  # send Schedule by the instance's fast lane when it has one
        self.plugin = plugin
        self._timeout = timeout_s
        self.prefill_chunk = prefill_chunk  # sent with every snapshot; 0 = no per-request limit
        self.calls = 0
        self.seconds = 0.0  # time spent in Schedule calls (for metrics)
        self._config: common_pb2.SchedulerConfig | None = None
        self._configured: str = ""  # key of the instance that has _config applied

    def _apply(self, inst: Instance, config: common_pb2.SchedulerConfig) -> common_pb2.SchedulerConfig:
        from tritium.protos.tritium.plugin.v1 import common_pb2_grpc

        stub = inst.stub(common_pb2_grpc.PluginStub)
        request = common_pb2.ConfigureRequest(scheduler=config)
        applied = stub.Configure(request, timeout=self._timeout).scheduler
        self._configured = inst.key
        return applied

    def configure(self, config: common_pb2.SchedulerConfig) -> common_pb2.SchedulerConfig:
        """Apply a scheduler configuration; returns it with defaults filled in. It is applied again to
        every later instance (a restart after a crash, a hot replace) before its first Schedule."""
        applied = self._sup.call(self.plugin, lambda inst: self._apply(inst, config), method="Configure")
        self._config = config
        return applied

    def schedule(self, request):  # noqa: ANN001, ANN201 (a proto request or the engine's snapshot)
        """The next step's batch: a ScheduleResponse for a ScheduleRequest, or the engine's
        ScheduleDecision for its ScheduleSnapshot."""
        if isinstance(request, scheduler_pb2.ScheduleRequest):
            return self._schedule(request)
        from tritium.core.serving.scheduling import from_proto, to_proto

        return from_proto(self._schedule(to_proto(request, self.prefill_chunk)))

    def _schedule(self, request: scheduler_pb2.ScheduleRequest) -> scheduler_pb2.ScheduleResponse:
        def go(inst: Instance) -> scheduler_pb2.ScheduleResponse:
            if self._config is not None and inst.key != self._configured:
                self._apply(inst, self._config)
            lane = getattr(inst.process, "fastlane", None) if self.fastlane else None
            if lane is not None:
                resp = lane.call("Schedule", request, scheduler_pb2.ScheduleResponse, self._timeout)
                if resp is not None:
                    return resp
            return inst.stub(scheduler_pb2_grpc.SchedulerStub).Schedule(request, timeout=self._timeout)

        t0 = time.perf_counter()
        try:
            return self._sup.call(self.plugin, go, method="Schedule")
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t0
