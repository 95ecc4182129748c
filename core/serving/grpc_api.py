"""The `tritium.serving.v1.Serving` gRPC API over the same engine as the HTTP API.

Generate streams one GenerateResponse per sampled token (text delta, token id, optional logprob); the
last one carries the finish reason and usage. Bad input is INVALID_ARGUMENT naming the field, an unknown
model NOT_FOUND, a full queue RESOURCE_EXHAUSTED with a `retry-after` trailer; a client that cancels (or
whose deadline passes) cancels its engine request, which frees its KV at the next step.

A plain thread-pool gRPC server: each streaming call holds a worker thread and reads its request's
events synchronously. The pool and `maximum_concurrent_rpcs` are sized from the engine's limits, so
calls beyond what the engine could ever queue are refused by gRPC itself instead of piling up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from tritium.core.engine.generate import end_of_generation_ids
from tritium.core.errors import ContextOverflowError, SamplingError, TokenizerError
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.errors import EngineStoppedError, QueueFullError
from tritium.core.serving.request_limits import (
    RequestLimitError,
    check_lengths,
    effective_max_tokens,
    effective_temperature,
)
from tritium.core.serving.request_stream import RequestOutput
from tritium.protos.tritium.serving.v1 import serving_pb2, serving_pb2_grpc

CHAT_ROLES = ("system", "developer", "user", "assistant")


class ServingServicer(serving_pb2_grpc.ServingServicer):
    """Generate and Models for the one model `engine` serves under `model_id`."""

    def __init__(self, engine: ServingEngine, model_id: str, *, backend_plugin: str = "in-core") -> None:
        self.engine = engine
        self.model_id = model_id
        self.backend_plugin = backend_plugin

    def Models(self, request: serving_pb2.ModelsRequest, context: grpc.ServicerContext  # noqa: N802
               ) -> serving_pb2.ModelsResponse:
        model = self.engine.model
        info = serving_pb2.ModelInfo(
            id=self.model_id, path=str(getattr(model, "path", "")), format=str(getattr(model, "format", "")),
            arch=model.config.arch, n_ctx=self.engine.n_ctx, n_vocab=model.config.n_vocab,
            backend_plugin=self.backend_plugin)
        return serving_pb2.ModelsResponse(models=[info])

    def Generate(self, request: serving_pb2.GenerateRequest, context: grpc.ServicerContext  # noqa: N802
                 ) -> Iterator[serving_pb2.GenerateResponse]:
        if request.model and request.model != self.model_id:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"model: {request.model!r} does not exist; this server serves {self.model_id!r}")
        try:
            ids, prompt_field = self._input(request)
            params = self._params(request, len(ids), prompt_field)
            handle = self.engine.submit(ids, params)
        except (SamplingError, TokenizerError, ContextOverflowError, RequestLimitError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except QueueFullError as e:
            context.set_trailing_metadata((("retry-after", str(e.retry_after)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except EngineStoppedError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        # Runs when the call ends for any reason: a cancelled or expired call cancels the request.
        context.add_callback(lambda: None if handle.finished else handle.cancel())
        request_id = request.request_id or f"gen-{uuid.uuid4().hex[:24]}"
        enders = end_of_generation_ids(self.engine.model, params)
        for event in handle:
            if event.finish_reason == "error":
                context.abort(grpc.StatusCode.INTERNAL, f"generation failed: {event.error}")
            yield self._response(request_id, event, request.logprobs, enders)

    def _input(self, request: serving_pb2.GenerateRequest) -> tuple[list[int], str]:
        """Token ids of the request's input and the name of the field they came from."""
        tokenizer = self.engine.model.tokenizer
        which = request.WhichOneof("input")
        if which == "prompt":
            if not request.prompt:
                raise RequestLimitError("prompt", "expected non-empty text")
            return list(tokenizer.encode(request.prompt)), "prompt"
        if which == "prompt_tokens":
            if not request.prompt_tokens.ids:
                raise RequestLimitError("prompt_tokens.ids", "expected at least one token id")
            return list(request.prompt_tokens.ids), "prompt_tokens"
        if which == "chat":
            messages = request.chat.messages
            if not messages:
                raise RequestLimitError("chat.messages", "expected at least one message")
            for i, m in enumerate(messages):
                if m.role not in CHAT_ROLES:
                    raise RequestLimitError(f"chat.messages[{i}].role",
                                            f"expected one of {', '.join(CHAT_ROLES)}, got {m.role!r}")
            rendered = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                        for m in messages]
            try:
                return list(tokenizer.encode_chat(rendered)), "chat"
            except TokenizerError as e:
                raise RequestLimitError("chat.messages", str(e)) from None
        raise RequestLimitError("input", "expected one of prompt, prompt_tokens or chat")

    def _params(self, request: serving_pb2.GenerateRequest, n_prompt: int,
                prompt_field: str) -> SamplingParams:
        s = request.sampling
        cfg, n_ctx = self.engine.config, self.engine.n_ctx
        requested = s.max_tokens if s.HasField("max_tokens") else None
        check_lengths(n_prompt, requested, n_ctx=n_ctx, max_tokens_limit=cfg.max_tokens_limit,
                      prompt_field=prompt_field, max_tokens_field="sampling.max_tokens")
        params = SamplingParams(
            temperature=effective_temperature(s.temperature if s.HasField("temperature") else None),
            top_p=s.top_p if s.HasField("top_p") else 1.0,
            top_k=s.top_k if s.HasField("top_k") else 0,
            min_p=s.min_p if s.HasField("min_p") else 0.0,
            repetition_penalty=s.repetition_penalty if s.HasField("repetition_penalty") else 1.0,
            seed=s.seed if s.HasField("seed") else None,
            max_tokens=effective_max_tokens(requested, None, n_prompt, n_ctx=n_ctx,
                                            max_tokens_limit=cfg.max_tokens_limit),
            stop=list(s.stop), stop_token_ids=list(s.stop_token_ids), ignore_eos=s.ignore_eos,
            logprobs=0 if request.logprobs else None)
        try:
            return params.validate()
        except SamplingError as e:
            raise SamplingError(f"sampling.{e}") from None

    def _response(self, request_id: str, event: RequestOutput, logprobs: bool,
                  enders: frozenset[int]) -> serving_pb2.GenerateResponse:
        out = serving_pb2.GenerateResponse(request_id=request_id, text=event.text)
        if event.token_id is not None:
            out.token_ids.append(event.token_id)
            if logprobs and event.logprob is not None:
                out.logprobs.append(event.logprob)
        if event.finish_reason is not None:
            out.finish_reason = _finish_reason(event, enders)
            out.usage.prompt_tokens = event.prompt_tokens
            out.usage.completion_tokens = event.completion_tokens
        return out


def _finish_reason(event: RequestOutput, enders: frozenset[int]) -> Any:
    if event.finish_reason == "length":
        return serving_pb2.FINISH_REASON_LENGTH
    if event.finish_reason == "cancelled":
        return serving_pb2.FINISH_REASON_CANCELLED
    if event.token_id is not None and event.token_id not in enders:
        return serving_pb2.FINISH_REASON_STOP_STRING  # "stop" without an end-of-generation token
    return serving_pb2.FINISH_REASON_STOP


def start_grpc_server(engine: ServingEngine, model_id: str, host: str, port: int) -> tuple[grpc.Server, int]:
    """Start the Serving service on host:port (port 0 picks a free one); return the server and its port."""
    cfg = engine.config
    slots = cfg.max_batch_size + cfg.max_queue
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="tritium-grpc"),
                         maximum_concurrent_rpcs=slots)
    serving_pb2_grpc.add_ServingServicer_to_server(ServingServicer(engine, model_id), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"gRPC: cannot listen on {host}:{port}")
    server.start()
    return server, bound
