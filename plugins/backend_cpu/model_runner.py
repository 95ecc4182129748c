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

import grpc
import numba
import numpy as np
from tritium.protos.tritium.plugin.v1 import backend_pb2
from tritium.sdk import shm


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

    def run(self, fn, *args):  # noqa: ANN001, ANN002, ANN201
        """Run fn(*args) under the runner's lock (one Runtime call at a time) and return its result."""
        with self._lock:
            return fn(*args)

    def unload(self) -> None:
        """Drop the model, its sequences and the logits segment."""
        self.sequences.clear()
        self.runtime = self.loaded = None
        if self.logits is not None:
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
        """One Runtime step per logits mode for the whole batch; logits written to the segment."""
        if self.runtime is None:
            raise StepError(grpc.StatusCode.FAILED_PRECONDITION, "Step before LoadModel")
        t0 = time.perf_counter()
        numba.set_num_threads(self.runtime.threads)  # per calling thread: cheap, and safe on any thread
        rows = sum(len(s.tokens) if s.all_logits else 1 for s in request.batch)
        if rows > self.max_rows:
            # Rare (a prefill with all_logits): grow the segment; the host maps the new one by name.
            self.logits.close()
            self.max_rows = max(rows, 2 * self.max_rows)
            self.logits = shm.Segment.create(self.max_rows * self.n_vocab * 4, "logits")
        seen: set[int] = set()
        plain, full = [], []
        for item in request.batch:
            sid = item.sequence_id
            if sid in seen:
                raise StepError(grpc.StatusCode.INVALID_ARGUMENT, f"sequence {sid} appears twice")
            seen.add(sid)
            if not item.tokens:
                raise StepError(grpc.StatusCode.INVALID_ARGUMENT, f"sequence {sid} has no tokens")
            bad = [t for t in item.tokens if not 0 <= t < self.n_vocab]
            if bad:
                raise StepError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sequence {sid}: token ids {bad[:5]} outside the vocabulary [0, {self.n_vocab})",
                )
            seq = self.sequences.get(sid)
            held = seq.n_past if seq is not None else 0
            if item.HasField("n_past") and item.n_past > held:
                raise StepError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"sequence {sid}: host says n_past {item.n_past}, plugin holds {held}",
                )
            start = item.n_past if item.HasField("n_past") else held
            if start + len(item.tokens) > self.runtime.n_ctx:
                raise StepError(
                    grpc.StatusCode.OUT_OF_RANGE, f"sequence {sid} would exceed n_ctx {self.runtime.n_ctx}"
                )
            (full if item.all_logits else plain).append(item)
        for item in [*plain, *full]:
            seq = self.sequences.get(item.sequence_id)
            if seq is None:
                seq = self.sequences[item.sequence_id] = self.runtime.new_sequence()
            if item.HasField("n_past") and item.n_past < seq.n_past:
                seq.truncate(item.n_past)
        results: dict[int, np.ndarray] = {}
        for group, every in ((plain, False), (full, True)):
            if group:
                outs = self.runtime.step(
                    [(self.sequences[i.sequence_id], list(i.tokens)) for i in group], all_logits=every
                )
                for item, out in zip(group, outs, strict=True):
                    results[item.sequence_id] = np.asarray(out, dtype=np.float32).reshape(-1, self.n_vocab)
        resp = backend_pb2.StepResponse(step_id=request.step_id)
        offset = 0
        for item in request.batch:
            arr = results[item.sequence_id]
            self.logits.view(offset, np.float32, arr.shape)[...] = arr
            resp.outputs.add(
                sequence_id=item.sequence_id,
                logits=self.logits.handle(offset, np.float32, arr.shape),
                n_past=self.sequences[item.sequence_id].n_past,
            )
            offset += arr.nbytes
        resp.compute_us = int((time.perf_counter() - t0) * 1e6)
        return resp

    def cleanup(self, sequence_ids: list[int]) -> int:
        """Free sequences; returns how many are left."""
        for sid in sequence_ids:
            self.sequences.pop(sid, None)
        return len(self.sequences)
