"""The OpenAI-compatible HTTP API over the continuous-batching engine (FastAPI).

Routes: POST /v1/completions, POST /v1/chat/completions (both with `stream: true` as server-sent
events ending in `data: [DONE]`), GET /v1/models, GET /v1/models/{id}, GET /health; the OpenAPI schema
at /openapi.json. Every refusal is an OpenAI error body (openai_errors.py). A request is tokenized and
checked against the context window here, then handed to the engine as one engine request per choice
(`n`) and prompt; a streaming client that goes away cancels them, which frees their KV at the next step.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from tritium.core.errors import TokenizerError, TritiumError
from tritium.core.sampling import SamplingParams
from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.openai_errors import APIError, from_tritium_error, install_error_handlers
from tritium.core.serving.openai_schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    SamplingFields,
    prompt_list,
)
from tritium.core.serving.request_limits import (
    RequestLimitError,
    check_lengths,
    effective_max_tokens,
    effective_temperature,
)
from tritium.core.serving.request_stream import RequestHandle, RequestOutput
from tritium.core.serving.serving_config import ServingConfig
from tritium.core.tokenizer import FALLBACK_TURN_MARKERS

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what} for code, what in (
        (400, "invalid request (the error names the field)"), (404, "unknown model"),
        (429, "admission queue full; see Retry-After"), (503, "shutting down"))}
DISCONNECT_POLL_S = 0.1
SEED_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class _Job:
    """What one endpoint call asks the engine for: prompts × n choices."""

    prompts: list[list[int]]
    params: list[SamplingParams]  # one per choice, prompt-major (choice index = prompt * n + j)
    n: int


def create_app(engine: ServingEngine, *, model_id: str, config: ServingConfig | None = None,
               log: Callable[[str], None] | None = None, metrics: Any = None) -> FastAPI:
    """The FastAPI application serving `engine`'s model under `model_id`. Its lifespan starts and
    stops the engine thread (an engine already started is fine); `log` hears when it has stopped.
    `GET /metrics` serves the Prometheus registry `metrics` (default: the engine's metrics only)."""
    config = config or engine.config
    if metrics is None:
        from tritium.core.serving.serving_metrics import metrics_registry

        metrics = metrics_registry(engine)
    api = _OpenAIFrontend(engine, model_id, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        engine.stop()
        if log is not None:
            c = engine.counters
            log(f"engine stopped after {c.steps} steps: {c.finished} requests finished, "
                f"{c.cancelled} cancelled, {c.tokens_generated} tokens generated")

    app = FastAPI(title="Tritium", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API of the Tritium BitNet b1.58 server")
    install_error_handlers(app)
    app.add_middleware(JsonBodyByDefault)

    _openapi_without_422(app)

    @app.post("/v1/completions", responses=ERROR_RESPONSES)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await api.completions(body, request)

    @app.post("/v1/chat/completions", responses=ERROR_RESPONSES)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await api.chat_completions(body, request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [api.model_card()]}

    @app.get("/v1/models/{model:path}", responses=ERROR_RESPONSES)
    async def model(model: str) -> dict[str, Any]:
        api.check_model(model)
        return api.model_card()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_id, **engine.load()}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # A scrape calls each plugin's Metrics RPC: off the event loop.
        body = await asyncio.to_thread(generate_latest, metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every validated route; this API answers 400 instead (OpenAI's code),
    so the served schema lists what the server really returns."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class JsonBodyByDefault:
    """Read POST bodies under /v1/ as JSON whatever their content type says.

    `curl -d '{...}'` sends `application/x-www-form-urlencoded`, and some clients send no content type;
    the API only ever takes JSON, so the body is parsed as JSON and a bad one is refused as bad JSON
    instead of as a "body must be an object" mystery.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class _OpenAIFrontend:
    """Turns OpenAI requests into engine requests and engine events into OpenAI responses."""

    def __init__(self, engine: ServingEngine, model_id: str, config: ServingConfig) -> None:
        self.engine = engine
        self.model_id = model_id
        self.config = config
        self.tokenizer = engine.model.tokenizer
        self.created = int(time.time())

    def model_card(self) -> dict[str, Any]:
        return {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "tritium",
                "max_model_len": self.engine.n_ctx}

    def check_model(self, name: str | None) -> None:
        if name and name != self.model_id:
            raise APIError(404, f"model {name!r} does not exist; this server serves {self.model_id!r}",
                           param="model", type_="invalid_request_error", code="model_not_found")

    # ---- /v1/completions ----------------------------------------------------------------------------
    async def completions(self, body: CompletionRequest, request: Request) -> Any:
        self.check_model(body.model)
        prompts = []
        for p in prompt_list(body.prompt):
            prompts.append(self._encode(p, "prompt") if isinstance(p, str) else list(p))
        job = self._job(body, prompts, "prompt", body.logprobs,
                        default_max_tokens=self.config.default_max_tokens)
        handles = self._submit(job, body.priority, "prompt")
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": self.model_id}
        want_logprobs = body.logprobs is not None
        if body.stream:
            return _sse(self._stream_completion(handles, job, head, want_logprobs, body), handles)
        results = await _collect(handles, request)
        choices = []
        for i, events in enumerate(results):
            text = "".join(e.text for e in events)
            choices.append({"index": i, "text": text, "finish_reason": _finish(events[-1]),
                            "logprobs": self._completion_logprobs(events) if want_logprobs else None})
        return {**head, "choices": choices, "usage": _usage(job, results)}

    async def _stream_completion(self, handles: list[RequestHandle], job: _Job, head: dict[str, Any],
                                 want_logprobs: bool, body: CompletionRequest) -> AsyncIterator[str]:
        def choice(i: int, e: RequestOutput) -> dict[str, Any]:
            return {"index": i, "text": e.text, "finish_reason": _finish(e),
                    "logprobs": self._completion_logprobs([e]) if want_logprobs else None}

        async for event in _stream_choices(handles, job, head, want_logprobs, body, choice):
            yield event

    def _completion_logprobs(self, events: Sequence[RequestOutput]) -> dict[str, Any]:
        tokens, token_logprobs, top, offsets = [], [], [], []
        offset = 0
        for e in events:
            if e.token_id is None:
                continue
            piece = self._token_str(e.token_id)
            tokens.append(piece)
            token_logprobs.append(e.logprob)
            top.append({self._token_str(t): lp for t, lp in e.top_logprobs})
            offsets.append(offset)
            offset += len(piece)
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
                "text_offset": offsets}

    # ---- /v1/chat/completions -----------------------------------------------------------------------
    async def chat_completions(self, body: ChatCompletionRequest, request: Request) -> Any:
        self.check_model(body.model)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        try:
            ids = list(self.tokenizer.encode_chat(messages))
        except TokenizerError as e:
            raise APIError(400, f"messages: {e}", param="messages", code="invalid_messages") from None
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs requires logprobs: true", param="top_logprobs",
                           code="invalid_value")
        n_logprobs = (body.top_logprobs or 0) if body.logprobs else None
        if body.max_completion_tokens is not None:
            body = body.model_copy(update={"max_tokens": body.max_completion_tokens})
        limit_field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        extra_stop = () if self.tokenizer.chat_template else FALLBACK_TURN_MARKERS
        job = self._job(body, [ids], "messages", n_logprobs, default_max_tokens=None,
                        max_tokens_param=limit_field, extra_stop=extra_stop)
        handles = self._submit(job, body.priority, "messages")
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": created, "model": self.model_id}
        if body.stream:
            head = {**head, "object": "chat.completion.chunk"}
            return _sse(self._stream_chat(handles, job, head, body.logprobs, body), handles)
        results = await _collect(handles, request)
        choices = []
        for i, events in enumerate(results):
            message = {"role": "assistant", "content": "".join(e.text for e in events)}
            choices.append({"index": i, "message": message, "finish_reason": _finish(events[-1]),
                            "logprobs": {"content": self._chat_logprobs(events)} if body.logprobs else None})
        return {**head, "choices": choices, "usage": _usage(job, results)}

    async def _stream_chat(self, handles: list[RequestHandle], job: _Job, head: dict[str, Any],
                           want_logprobs: bool, body: ChatCompletionRequest) -> AsyncIterator[str]:
        for i in range(len(handles)):
            yield _event({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                               "logprobs": None, "finish_reason": None}]})

        def choice(i: int, e: RequestOutput) -> dict[str, Any]:
            return {"index": i, "delta": {"content": e.text} if e.text else {},
                    "logprobs": {"content": self._chat_logprobs([e])} if want_logprobs else None,
                    "finish_reason": _finish(e)}

        async for event in _stream_choices(handles, job, head, want_logprobs, body, choice):
            yield event

    def _chat_logprobs(self, events: Sequence[RequestOutput]) -> list[dict[str, Any]]:
        def entry(token_id: int, logprob: float | None) -> dict[str, Any]:
            return {"token": self._token_str(token_id), "logprob": logprob,
                    "bytes": list(self.tokenizer.token_bytes(token_id))}

        return [{**entry(e.token_id, e.logprob), "top_logprobs": [entry(t, lp) for t, lp in e.top_logprobs]}
                for e in events if e.token_id is not None]

    # ---- shared -------------------------------------------------------------------------------------
    def _encode(self, text: str, field: str) -> list[int]:
        try:
            return list(self.tokenizer.encode(text))
        except TokenizerError as e:
            raise APIError(400, f"{field}: {e}", param=field, code="invalid_prompt") from None

    def _job(self, body: SamplingFields, prompts: list[list[int]], prompt_field: str, logprobs: int | None,
             *, default_max_tokens: int | None, max_tokens_param: str = "max_tokens",
             extra_stop: Sequence[str] = ()) -> _Job:
        """Check lengths and limits against the context window; build each choice's SamplingParams."""
        cfg, n_ctx = self.config, self.engine.n_ctx
        if body.n > cfg.max_n:
            raise APIError(400, f"n: at most {cfg.max_n} choices per prompt, got {body.n}", param="n",
                           code="invalid_value")
        if len(prompts) * body.n > cfg.max_queue:
            raise APIError(400, f"n: {len(prompts)} prompts x {body.n} choices = {len(prompts) * body.n} "
                                f"sequences, more than this server ever queues ({cfg.max_queue})",
                           param="n", code="invalid_value")
        longest = max(len(p) for p in prompts)
        try:
            check_lengths(longest, body.max_tokens, n_ctx=n_ctx, max_tokens_limit=cfg.max_tokens_limit,
                          prompt_field=prompt_field, max_tokens_field=max_tokens_param)
        except RequestLimitError as e:
            raise APIError(400, str(e), param=e.field, code=e.code) from None
        params = []
        for ids in prompts:
            max_tokens = effective_max_tokens(body.max_tokens, default_max_tokens, len(ids), n_ctx=n_ctx,
                                              max_tokens_limit=cfg.max_tokens_limit)
            for j in range(body.n):
                seed = None if body.seed is None else (body.seed + j) & SEED_MASK
                params.append(SamplingParams(
                    temperature=effective_temperature(body.temperature),
                    top_p=1.0 if body.top_p is None else body.top_p,
                    top_k=body.top_k or 0, min_p=body.min_p or 0.0,
                    repetition_penalty=body.repetition_penalty or 1.0,
                    presence_penalty=body.presence_penalty or 0.0,
                    frequency_penalty=body.frequency_penalty or 0.0,
                    seed=seed, max_tokens=max_tokens, stop=[*_stops(body.stop), *extra_stop],
                    ignore_eos=body.ignore_eos, logprobs=logprobs))
        return _Job(prompts, params, body.n)

    def _submit(self, job: _Job, priority: int, prompt_field: str) -> list[RequestHandle]:
        requests = [(job.prompts[i // job.n], p) for i, p in enumerate(job.params)]
        try:
            return self.engine.submit_many(requests, priority=priority)
        except TritiumError as e:
            raise from_tritium_error(e, prompt_field) from None

    def _token_str(self, token_id: int) -> str:
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _include_usage(body: SamplingFields) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _finish(event: RequestOutput) -> str | None:
    if event.finish_reason in (None, "stop", "length"):
        return event.finish_reason
    return "stop"  # cancelled by a shutdown: the text so far is all there is


def _usage(job: _Job, results: Sequence[Sequence[RequestOutput]]) -> dict[str, int]:
    """OpenAI counts each prompt once, however many choices it has."""
    prompt_tokens = sum(len(p) for p in job.prompts)
    completion = sum(events[-1].completion_tokens for events in results if events)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _sse(events: AsyncIterator[str], handles: list[RequestHandle]) -> StreamingResponse:
    """A text/event-stream response ending in `data: [DONE]`; a client that disconnects cancels the
    engine requests (Starlette cancels the body iterator, and `finally` runs)."""

    async def body() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield event
            yield "data: [DONE]\n\n"
        finally:
            _cancel_unfinished(handles)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _cancel_unfinished(handles: Sequence[RequestHandle]) -> None:
    for h in handles:
        if not h.finished:
            h.cancel()



async def _stream_choices(handles: list[RequestHandle], job: _Job, head: dict[str, Any], want_logprobs: bool,
                          body: CompletionRequest | ChatCompletionRequest,
                          choice: Callable[[int, RequestOutput], dict[str, Any]]) -> AsyncIterator[str]:
    """SSE events of n merged request streams, one chunk per event `choice` turns into an OpenAI choice;
    usage on the last chunk, or in a chunk of its own when `stream_options.include_usage` asks for it."""
    last: dict[int, RequestOutput] = {}
    finished = 0
    async for i, e in _merged(handles):
        last[i] = e
        if e.finish_reason == "error":
            yield _event({"error": {"message": e.error, "type": "server_error", "param": None, "code": None}})
            return
        finished += e.finish_reason is not None
        if not e.text and e.finish_reason is None and not want_logprobs:
            continue  # nothing to tell the client yet (held-back bytes or stop-string prefix)
        chunk = {**head, "choices": [choice(i, e)]}
        if finished == len(handles) and not _include_usage(body):
            chunk["usage"] = _usage(job, [[last[k]] for k in range(len(handles))])
        yield _event(chunk)
    if _include_usage(body):
        usage = _usage(job, [[last[k]] for k in range(len(handles))])
        yield _event({**head, "choices": [], "usage": usage})

async def _merged(handles: Sequence[RequestHandle]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Events of several requests as they come, tagged with the request's index."""
    if len(handles) == 1:
        async for e in handles[0]:
            yield 0, e
        return
    queue: asyncio.Queue[tuple[int, RequestOutput]] = asyncio.Queue()

    async def pump(i: int, h: RequestHandle) -> None:
        async for e in h:
            await queue.put((i, e))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            i, e = await queue.get()
            remaining -= e.finish_reason is not None
            yield i, e
    finally:
        for t in tasks:
            t.cancel()


async def _collect(handles: list[RequestHandle], request: Request) -> list[list[RequestOutput]]:
    """Every event of every request; a client that disconnects meanwhile cancels them."""
    results: list[list[RequestOutput]] = [[] for _ in handles]

    async def gather() -> None:
        async for i, e in _merged(handles):
            results[i].append(e)

    task = asyncio.create_task(gather())
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not done and await request.is_disconnected():
                task.cancel()
                raise APIError(499, "the client disconnected", code="client_closed_request")
        task.result()
    finally:
        _cancel_unfinished(handles)
    errors = [events[-1].error for events in results if events and events[-1].finish_reason == "error"]
    if errors:
        raise APIError(500, f"generation failed: {errors[0]}", type_="server_error")
    return results
