"""The one exception the stream raises to end a socket, mapped once at the edge.

Every reason for closing a stream socket becomes a :class:`StreamClosed`
carrying the public close code (docs/protocol.md) and a reason safe to show the
client; ``connection.py`` turns it into an ``error`` frame plus a close.
"""

from __future__ import annotations

from tidings.errors import CloseCode, ErrorCode

# Error-frame codes for the close codes; "too_slow" and "cursor_expired" are
# stream-only, so they live here rather than in the shared ErrorCode.
TOO_SLOW = "too_slow"
GOING_AWAY = "going_away"

_ERROR_CODES: dict[int, str] = {
    CloseCode.BAD_FRAME: ErrorCode.BAD_REQUEST,
    CloseCode.UNAUTHORIZED: ErrorCode.UNAUTHORIZED,
    CloseCode.FORBIDDEN: ErrorCode.FORBIDDEN,
    CloseCode.UNKNOWN_RUN: ErrorCode.NOT_FOUND,
    CloseCode.TOO_SLOW: TOO_SLOW,
    CloseCode.TOKEN_EXPIRED: ErrorCode.TOKEN_EXPIRED,
    CloseCode.MESSAGE_TOO_BIG: ErrorCode.PAYLOAD_TOO_LARGE,
    CloseCode.INTERNAL_ERROR: ErrorCode.INTERNAL,
    CloseCode.GOING_AWAY: GOING_AWAY,
    CloseCode.TRY_AGAIN_LATER: ErrorCode.RATE_LIMITED,
}

# What a socket refused for a dependency outage is told to wait (the REST
# answers' Retry-After says the same).
OUTAGE_RETRY_SECONDS = 5

# RFC 6455 caps a close reason at 123 bytes.
_MAX_REASON = 123


class StreamClosed(Exception):
    """Ends one socket with ``code``; ``reason`` goes to the client verbatim."""

    def __init__(self, code: CloseCode, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        self.reason = reason
        # Seconds the client should wait before it tries again (1013 only):
        # the error frame's ``retry_after``.
        self.retry_after = retry_after

    @property
    def error_code(self) -> str:
        return _ERROR_CODES.get(self.code, ErrorCode.INTERNAL)

    @property
    def close_reason(self) -> str:
        encoded = self.reason.encode()[:_MAX_REASON]
        return encoded.decode(errors="ignore")


def too_slow() -> StreamClosed:
    return StreamClosed(
        CloseCode.TOO_SLOW, "too slow: reconnect with your resume token, nothing is lost"
    )


def try_again_later(limit: int) -> StreamClosed:
    return StreamClosed(
        CloseCode.TRY_AGAIN_LATER,
        f"your tenant has {limit} streams open on this gateway, its maximum; retry later",
    )


class Unavailable(StreamClosed):
    """A dependency (Temporal, Kafka, Redis) is away: 1013 with a retry hint,
    error code ``unavailable`` as on REST's 503."""

    def __init__(self, dependency: str) -> None:
        super().__init__(
            CloseCode.TRY_AGAIN_LATER,
            f"{dependency} is unavailable; retry in {OUTAGE_RETRY_SECONDS} s",
            retry_after=OUTAGE_RETRY_SECONDS,
        )
        self.dependency = dependency

    @property
    def error_code(self) -> str:
        return ErrorCode.UNAVAILABLE


def going_away() -> StreamClosed:
    return StreamClosed(
        CloseCode.GOING_AWAY, "gateway going away: reconnect with your resume token"
    )
