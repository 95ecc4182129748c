"""OpenAI-style error responses: every refusal is `{"error": {"message", "type", "param", "code"}}`.

Maps the request-validation errors of FastAPI/pydantic, Starlette's routing errors (404, 405) and
Tritium's own errors (sampling, context overflow, full queue) to a status code and a body naming the
field at fault. Nothing a client sends should reach the 500 handler; if something does, the client
still gets an OpenAI-style body, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from tritium.core.errors import ContextOverflowError, SamplingError, TokenizerError
from tritium.core.serving.errors import EngineStoppedError, QueueFullError

log = logging.getLogger("tritium.serving")

# Names that may follow a top-level field in a pydantic error location (nested models we define).
_NESTED_FIELDS = {"role", "content", "name", "type", "text", "include_usage"}


class APIError(Exception):
    """A refusal with its HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code
        self.headers = headers


def error_response(err: APIError) -> JSONResponse:
    body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def param_of(loc: Sequence[Any]) -> str | None:
    """'messages.0.role' from pydantic's ('body', 'messages', 0, 'role'); union branch tags dropped."""
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    if not parts:
        return None
    kept = [str(parts[0])]
    for p in parts[1:]:
        if isinstance(p, int) or p in _NESTED_FIELDS:
            kept.append(str(p))
    return ".".join(kept)


def from_validation_error(exc: RequestValidationError) -> APIError:
    """The first problem of a request body as a 400 naming its field."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "invalid", "loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('msg')} "
                             f"(at position {first.get('loc', ('body', '?'))[-1]})", code="invalid_json")
    param = param_of(first.get("loc", ()))
    if param is None:
        if first.get("type") == "missing":
            return APIError(400, "the request body is missing: expected a JSON object", code="invalid_body")
        return APIError(400, f"the request body must be a JSON object: {first.get('msg')}",
                        code="invalid_body")
    what = "is required" if first.get("type") == "missing" else f"is invalid: {first.get('msg')}"
    got = "" if first.get("type") == "missing" else f" (got {_short(first.get('input'))})"
    return APIError(400, f"{param} {what}{got}", param=param, code="invalid_value")


def from_tritium_error(exc: Exception, prompt_field: str) -> APIError:
    """Map the engine's refusals; `prompt_field` is 'prompt' or 'messages' (what the client sent)."""
    if isinstance(exc, QueueFullError):
        return APIError(429, str(exc), type_="rate_limit_exceeded", code="queue_full",
                        headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, EngineStoppedError):
        return APIError(503, str(exc), type_="server_unavailable", code="shutting_down",
                        headers={"Retry-After": "5"})
    if isinstance(exc, SamplingError):
        field, _, rest = str(exc).partition(":")
        return APIError(400, str(exc), param=field.strip() or None, code="invalid_value")
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), param="max_tokens", code="context_length_exceeded")
    if isinstance(exc, TokenizerError):
        return APIError(400, str(exc), param=prompt_field, code="invalid_prompt")
    raise exc


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app produces gets an OpenAI-style body."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(APIError(exc.status_code, message, type_=kind,
                                       headers=getattr(exc, "headers", None)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error serving %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal error ({type(exc).__name__})", type_="server_error"))


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
