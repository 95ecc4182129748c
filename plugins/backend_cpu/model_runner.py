"""The model side of the cpu backend: LoadModel and Step on the engine's Runtime, all on one thread.

numba's thread count is per calling thread, and each OS thread that enters a parallel region gets its
own worker team: running steps on whichever gRPC worker thread took the call oversubscribes the CPU
(4x slower in our measurement). The plugin therefore serves with a single gRPC worker thread (see
__main__), so every Runtime call runs on that one thread — the thread layout of the Runtime run
in-process — and each step sets the thread count for the calling thread anyway. A separate compute
thread would also work, but costs two more thread wake-ups per step, which on a loaded machine is
milliseconds.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import grpc
import numba
import numpy as np
from tritium.protos.tritium.plugin.v1 import backend_pb2, common_pb2
from tritium.sdk import shm


class _Item(NamedTuple):
    """One SequenceInput, read out of the request once (see ModelRunner.step)."""

    sid: int
    tokens: list[int]
    all_logits: bool
    n_past: int  # -1: unset
    steps: int  # greedy_steps
    stops: frozenset[int]
    sampling: backend_pb2.ContinuationSampling | None


class StepError(Exception):
    """A request the runner refuses: the gRPC status code and a message naming what is wrong."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelRunner:
    """One loaded model, its live sequences, and the logits segment Step writes into."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runtime = None
        self.loaded = None
        self.logits: shm.Segment | None = None
        self.max_rows = 0
        self.n_vocab = 0
        self.sequences: dict[int, object] = {}
        self._row_views: dict[tuple, tuple] = {}  # (segment, first row, rows) -> (handle, array)

    def run(self, fn, *args):  # noqa: ANN001, ANN002, ANN201
        """Run fn(*args) under the runner's lock (one Runtime call at a time) and return its result."""
        with self._lock:
            return fn(*args)

    def unload(self) -> None:
        """Drop the model, its sequences and the logits segment."""
        self.sequences.clear()
        self.runtime = self.loaded = None
        if self.logits is not None:
            self._row_views.clear()  # they map the segment: its memory goes only with them
            self.logits.close()
            self.logits = None

    def close(self) -> None:
        """Unload the model."""
        self.unload()

    # The methods below are called through run().
    def load(
        self, request: backend_pb2.LoadModelRequest, default_threads: int | None
    ) -> backend_pb2.LoadModelResponse:
        """Memory-map the model, build the Runtime, set up the logits segment."""
        self.unload()
        try:
            from tritium.core.compute import Runtime
            from tritium.core.model.loader import load_model
        except ImportError as exc:
            raise StepError(
                grpc.StatusCode.FAILED_PRECONDITION, f"the engine library is incomplete: {exc}"
            ) from None
        try:
            loaded = load_model(request.path)
        except Exception as exc:  # the loader's typed errors name the file and tensor; pass them on
            raise StepError(
                grpc.StatusCode.INVALID_ARGUMENT, f"cannot load {request.path}: {type(exc).__name__}: {exc}"
            ) from None
        if request.format and request.format != loaded.format:
            raise StepError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{request.path} is a {loaded.format} model, not {request.format}",
            )
        kwargs: dict[str, object] = {"threads": request.threads or default_threads}
        if request.kv_dtype:
            kwargs["kv_dtype"] = request.kv_dtype
        if request.n_ctx:
            kwargs["n_ctx"] = request.n_ctx
        try:
            runtime = Runtime(loaded.config, loaded.weights, **kwargs)
        except ValueError as exc:
            raise StepError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot run {request.path}: {exc}") from None
        numba.set_num_threads(runtime.threads)
        self.loaded, self.runtime = loaded, runtime
        self.n_vocab = loaded.config.n_vocab
        self.max_rows = max(request.max_logit_rows or request.max_sequences or 64, 1)
        self.logits = shm.Segment.create(self.max_rows * self.n_vocab * 4, "logits")
        cfg = loaded.config
        return backend_pb2.LoadModelResponse(
            model_id=str(loaded.path),
            model=backend_pb2.ModelInfo(
                arch=cfg.arch,
                n_vocab=cfg.n_vocab,
                n_embd=cfg.n_embd,
                n_layer=cfg.n_layer,
                n_ctx=runtime.n_ctx,
                format=loaded.format,
            ),
            logits_segment=self.logits.message(),
            interpretation=list(getattr(loaded, "interpretation", [])),
        )

    def step(self, request: backend_pb2.StepRequest) -> backend_pb2.StepResponse:
        """One Runtime step per logits mode for the whole batch; logits written to the segment.

        The lm_head writes the last-token logits straight into the shared segment, and the response
        is built before the forward pass: after the model has streamed its weights through the
        caches, every further line of Python here runs cold, and it is on the host's critical path.
        So the request's fields are read once into plain tuples, and the rest works on those.
        """
        if self.runtime is None:
            raise StepError(grpc.StatusCode.FAILED_PRECONDITION, "Step before LoadModel")
        t0 = time.perf_counter()
        items = [
            _Item(i.sequence_id, list(i.tokens), i.all_logits, i.n_past if i.HasField("n_past") else -1,
                  i.greedy_steps, frozenset(i.stop_token_ids), i.sampling if i.HasField("sampling") else None)
            for i in request.batch
        ]
        plain, full, samplers = self._admit(items)
        rows = len(plain) + sum(len(item.tokens) for item in full)
        if rows > self.max_rows:
            # Rare (a prefill with all_logits): grow the segment; the host maps the new one by name.
            self._row_views.clear()
            self.logits.close()
            self.max_rows = max(rows, 2 * self.max_rows)
            self.logits = shm.Segment.create(self.max_rows * self.n_vocab * 4, "logits")
        # Segment layout: the plain sequences' rows first (one each, in their order), then each full
        # sequence's rows; every output handle is known now.
        row_of = {item.sid: (r, 1) for r, item in enumerate(plain)}
        row = len(plain)
        for item in full:
            row_of[item.sid] = (row, len(item.tokens))
            row += len(item.tokens)
        seqs = self.sequences
        resp = backend_pb2.StepResponse(step_id=request.step_id)
        add = resp.outputs.add
        for item in items:
            add(sequence_id=item.sid, n_past=seqs[item.sid].n_past + len(item.tokens)).logits.CopyFrom(
                self._rows(*row_of[item.sid])[0]
            )
        rt = self.runtime
        if plain:
            out = self._rows(0, len(plain))[1]
            rt.step([(seqs[item.sid], item.tokens) for item in plain], logits_out=out)
            if any(item.steps for item in plain):
                self._continue(resp, plain, out, samplers)
        if full:
            out = self._rows(len(plain), row - len(plain))[1]
            rt.step([(seqs[item.sid], item.tokens) for item in full], all_logits=True, logits_out=out)
        resp.compute_us = int((time.perf_counter() - t0) * 1e6)
        return resp

    def _continue(
        self, resp: backend_pb2.StepResponse, plain: list[_Item], rows: np.ndarray, samplers: dict[int, tuple]
    ) -> None:
        """The continuations of the plain sequences (SequenceInput.greedy_steps): each round chooses
        every continuing sequence's next token (the argmax, or with SequenceInput.sampling the
        host's Sampler.choose over the history its penalties read) and feeds the ones not stopped as
        one batch step, whose logits land in their rows of the segment. A sampled continuation's
        output carries its generator's state after the last draw, and the logprobs it asked for."""
        outputs = {o.sequence_id: o for o in resp.outputs}
        seqs, rt = self.sequences, self.runtime
        if samplers:
            from tritium.sdk.sampling import logprobs_message, rng_state
        # (row in `rows`, sequence id, stop ids, tokens still allowed)
        active = [(r, item.sid, item.stops, item.steps) for r, item in enumerate(plain) if item.steps]
        while active:
            feed = []
            for r, sid, stops, left in active:
                chooser = samplers.get(sid)
                if chooser is None:
                    token = int(rows[r].argmax())  # numpy: the first maximum, as the host's greedy sampler
                else:
                    sampler, history, n_prompt = chooser
                    choice = sampler.choose(rows[r], history, n_prompt=n_prompt)
                    token = choice.token_id
                    history.append(token)
                    if choice.logprob is not None:
                        outputs[sid].logprobs.append(logprobs_message(choice))
                outputs[sid].greedy_tokens.append(token)
                if token not in stops:
                    feed.append((r, sid, stops, left - 1, token))
            if not feed:
                break
            first = feed[0][0]
            contiguous = [f[0] for f in feed] == list(range(first, first + len(feed)))
            if contiguous:
                out = rows[first : first + len(feed)]
            else:
                out = np.empty((len(feed), rows.shape[1]), np.float32)
            rt.step([(seqs[sid], [token]) for _, sid, _, _, token in feed], logits_out=out)
            if not contiguous:
                rows[[f[0] for f in feed]] = out
            for _, sid, _, _, _ in feed:
                outputs[sid].n_past = seqs[sid].n_past
            active = [(r, sid, stops, left) for r, sid, stops, left, _ in feed if left > 0]
        for sid, (sampler, _, _) in samplers.items():
            if not sampler.params.greedy:
                outputs[sid].rng.CopyFrom(rng_state(sampler.rng))

    @staticmethod
    def _sampler(item: _Item) -> tuple:
        """(Sampler, history, n_prompt) of a sampled continuation's request; StepError if invalid."""
        from tritium.core.errors import SamplingError
        from tritium.sdk.sampling import sampler_of

        try:
            return sampler_of(item.sampling)
        except SamplingError as exc:
            raise StepError(
                grpc.StatusCode.INVALID_ARGUMENT, f"sequence {item.sid}: sampling: {exc}"
            ) from None

    def _rows(self, first: int, n: int) -> tuple[common_pb2.TensorHandle, np.ndarray]:
        """The handle and the array of logits rows [first, first + n) of the segment, made once per
        shape (a decode step asks for the same few every time)."""
        key = (self.logits.name, first, n)
        hit = self._row_views.get(key)
        if hit is None:
            offset = first * self.n_vocab * 4
            hit = (self.logits.handle(offset, np.float32, (n, self.n_vocab)),
                   self.logits.view(offset, np.float32, (n, self.n_vocab)))
            if len(self._row_views) >= 256:
                self._row_views.clear()
            self._row_views[key] = hit
        return hit

    def _admit(self, items: list[_Item]) -> tuple[list[_Item], list[_Item], dict[int, tuple]]:
        """Validate the batch (StepError naming the sequence otherwise), create new sequences and
        apply the host's n_past rewinds; returns the items wanting last-token and all-token logits,
        and the sampled continuations' (Sampler, history, n_prompt) by sequence id."""
        seen: set[int] = set()
        plain, full = [], []
        n_ctx, n_vocab, seqs = self.runtime.n_ctx, self.n_vocab, self.sequences
        for item in items:
            sid, toks, all_logits, n_past, greedy = item[:5]
            if sid in seen:
                raise StepError(grpc.StatusCode.INVALID_ARGUMENT, f"sequence {sid} appears twice")
            seen.add(sid)
            if not toks:
                raise StepError(grpc.StatusCode.INVALID_ARGUMENT, f"sequence {sid} has no tokens")
            if min(toks) < 0 or max(toks) >= n_vocab:
                bad = [t for t in toks if not 0 <= t < n_vocab]
                raise StepError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sequence {sid}: token ids {bad[:5]} outside the vocabulary [0, {n_vocab})",
                )
            seq = seqs.get(sid)
            held = seq.n_past if seq is not None else 0
            if n_past > held:
                raise StepError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"sequence {sid}: host says n_past {n_past}, plugin holds {held}",
                )
            start = n_past if n_past >= 0 else held
            if start + len(toks) + greedy > n_ctx:
                raise StepError(grpc.StatusCode.OUT_OF_RANGE, f"sequence {sid} would exceed n_ctx {n_ctx}")
            if greedy and all_logits:
                raise StepError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"sequence {sid}: greedy_steps with all_logits"
                )
            (full if all_logits else plain).append(item)
        samplers = {it.sid: self._sampler(it) for it in plain if it.steps and it.sampling is not None}
        for item in items:
            seq = seqs.get(item.sid)
            if seq is None:
                seq = seqs[item.sid] = self.runtime.new_sequence()
            if 0 <= item.n_past < seq.n_past:
                seq.truncate(item.n_past)
        return plain, full, samplers

    def cleanup(self, sequence_ids: list[int]) -> int:
        """Free sequences; returns how many are left."""
        for sid in sequence_ids:
            self.sequences.pop(sid, None)
        return len(self.sequences)
