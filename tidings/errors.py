"""Error kinds shared by the code that raises and the code that maps them.

Codes are stable strings: clients branch on them. HTTP statuses and WebSocket
close codes are mapped once, at the edge (the gateway).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode:
    BAD_REQUEST = "bad_request"
    VALIDATION = "validation_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    # Answered by the HTTP protocol itself (gateway/server/http_protocol.py), before any route.
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"
    UNKNOWN_PIPELINE = "unknown_pipeline"
    UNKNOWN_SIGNAL = "unknown_signal"
    RUN_FINISHED = "run_finished"
    # An Idempotency-Key sent again with another request body (HTTP 422).
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    TOKEN_EXPIRED = "token_expired"


class ActivityErrorType:
    """``ApplicationError.type`` values: the workflow and retry policies branch on these."""

    INVALID_INPUT = "TidingsInvalidInput"
    PROVIDER_UNAVAILABLE = "TidingsProviderUnavailable"
    STEP_FAILED = "TidingsStepFailed"
    EXTERNAL_TIMEOUT = "TidingsExternalTimeout"
    # An attempt that could not reach the event plane (Kafka) for the rest of
    # its time: the workflow schedules the step again without counting it.
    EVENT_PLANE_UNAVAILABLE = "TidingsEventPlaneUnavailable"


class CloseCode(IntEnum):
    """WebSocket close codes of the public contract (docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    # RFC 6455 "Try Again Later": the tenant has its maximum of sockets open on
    # this gateway (an extension of the original codes; clients back off and retry).
    TRY_AGAIN_LATER = 1013
    BAD_FRAME = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    UNKNOWN_RUN = 4404
    TOO_SLOW = 4408
    TOKEN_EXPIRED = 4410


class TidingsError(Exception):
    """An error with a stable code and a message safe to show a client."""

    code: str = ErrorCode.INTERNAL
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ConfigError(TidingsError):
    """A setting is missing or bad; the message names the variable, never its secret value."""

    code = ErrorCode.BAD_REQUEST
    status = 500


class NotFound(TidingsError):
    code = ErrorCode.NOT_FOUND
    status = 404


class BadRequest(TidingsError):
    code = ErrorCode.BAD_REQUEST
    status = 400


class Unauthorized(TidingsError):
    code = ErrorCode.UNAUTHORIZED
    status = 401


class Conflict(TidingsError):
    code = ErrorCode.CONFLICT
    status = 409


class RateLimited(TidingsError):
    code = ErrorCode.RATE_LIMITED
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(TidingsError):
    code = ErrorCode.UNAVAILABLE
    status = 503
