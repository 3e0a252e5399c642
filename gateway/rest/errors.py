"""Every error becomes ``{"error": {"code", "message"}}`` here, once, at the edge.

Routes and services raise :class:`tidings.errors.TidingsError` (or let a
Temporal, Kafka or Redis error escape); nothing below this module builds an
error response. A dependency that is away (``gateway.outages``) is a 503
``unavailable`` with ``Retry-After`` and one warning line, never a traceback.
Messages are written for clients: they never carry an API key, a
secret or a stack trace, and request-validation messages are rebuilt from
field locations only, never echoing the submitted values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from gateway.outages import dependency_down
from gateway.stream.errors import OUTAGE_RETRY_SECONDS
from tidings.errors import ErrorCode, RateLimited, TidingsError

log = logging.getLogger(__name__)

_HTTP_CODES: dict[int, str] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}
# Codes whose status is part of the public contract (docs/protocol.md), so a
# raiser elsewhere cannot drift it: e.g. an input failing its pipeline's
# schema is 422 whichever TidingsError subclass carried it.
_CODE_STATUS: dict[str, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNKNOWN_PIPELINE: 400,
    ErrorCode.UNKNOWN_SIGNAL: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RUN_FINISHED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.VALIDATION: 422,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
}
# Every 503 says when to come back.
_RETRY_LATER = {"Retry-After": str(OUTAGE_RETRY_SECONDS)}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error body for ``statuses``."""
    return {status: {"model": ErrorBody} for status in statuses}


def describe_validation(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors[:10]:
        loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        msg = str(error.get("msg", "invalid"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


async def _tidings_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TidingsError)
    # A 5xx raiser (ConfigError carries code bad_request) stays a server error.
    status = exc.status if exc.status >= 500 else _CODE_STATUS.get(exc.code, exc.status)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif status == 503:
        headers = _RETRY_LATER
    if status >= 500:
        # ConfigError and friends: the message is for operators, not clients.
        log.warning(
            "%s %s -> %s %s: %s", request.method, request.url.path, status, exc.code, exc.message
        )
        if status != 503:
            return error_response(500, ErrorCode.INTERNAL, "internal error")
    return error_response(status, exc.code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # A body that is not JSON at all is a malformed request, not a schema miss.
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, ErrorCode.BAD_REQUEST, "request body is not valid JSON")
    # A query parameter, path segment or header out of its format or range
    # (status=BOGUS, limit=0) is a malformed request: 400, as docs/protocol.md
    # says. 422 is kept for a body that fails its schema.
    if any(_where(error) != "body" for error in errors):
        malformed = [error for error in errors if _where(error) != "body"]
        return error_response(400, ErrorCode.BAD_REQUEST, describe_validation(malformed))
    return error_response(422, ErrorCode.VALIDATION, describe_validation(errors))


def _where(error: Any) -> str:
    loc = error.get("loc") or ("body",)
    return str(loc[0])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if exc.status_code >= 500:
        code = ErrorCode.INTERNAL
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code, message, exc.headers)


def _outage(request: Request, exc: Exception) -> JSONResponse | None:
    down = dependency_down(exc)
    if down is None:
        return None
    log.warning(
        "%s unavailable on %s %s (%s)", down, request.method, request.url.path, type(exc).__name__
    )
    message = f"{down} is unavailable; retry in {OUTAGE_RETRY_SECONDS} s"
    return error_response(503, ErrorCode.UNAVAILABLE, message, _RETRY_LATER)


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    """Temporal, Kafka and Redis errors: 503 if the dependency is away, else
    a 500 whose log line names the kind of error (never its text, which may
    carry a URL with a password)."""
    answer = _outage(request, exc)
    if answer is not None:
        return answer
    detail = exc.status if isinstance(exc, RPCError) else type(exc).__name__
    log.error("dependency error on %s %s: %s", request.method, request.url.path, detail)
    return error_response(500, ErrorCode.INTERNAL, "internal error")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    answer = _outage(request, exc)  # e.g. a Kafka deadline (gateway.outages.KafkaUnavailable)
    if answer is not None:
        return answer
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ErrorCode.INTERNAL, "internal error")


def install(app: FastAPI) -> None:
    """Register the handlers; FastAPI's defaults (``{"detail": ...}``) are replaced."""
    app.add_exception_handler(TidingsError, _tidings_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RPCError, _dependency_error)
    app.add_exception_handler(KafkaError, _dependency_error)
    app.add_exception_handler(RedisError, _dependency_error)
    app.add_exception_handler(Exception, _unexpected)
