"""The one error kind of the local stack: the CLI prints its message as one line."""

from __future__ import annotations

from tidings.errors import ErrorCode, TidingsError


class StackError(TidingsError):
    """Something stops the local stack from starting; the message says what and how to fix it."""

    code = ErrorCode.UNAVAILABLE
    status = 503
