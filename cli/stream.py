"""How ``tidings watch`` and ``tidings events --follow`` read a run's live
stream: the same resume and retry options, and the same exit code when the
stream ends before the run does."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from cli.common import EXIT_REFUSED, EXIT_UNAVAILABLE
from tidings.client import FATAL_CLOSE_CODES, StreamError, Subscription, subscribe

# Acks are sent before closing; the close handshake itself need not hold the terminal.
CLOSE_TIMEOUT = 1.0
# Consecutive reconnect attempts (jittered backoff up to 10 s each): enough to
# outlast a gateway restart or deploy of a minute or two.
RECONNECT_ATTEMPTS = 30


def follow(
    gateway: str, run_id: str, key: str, after: str | None
) -> AbstractAsyncContextManager[Subscription]:
    """The run's stream from its first event, or from just ``after`` a cursor."""
    options: dict[str, Any] = {
        "from_start": True,
        "close_timeout": CLOSE_TIMEOUT,
        "max_attempts": RECONNECT_ATTEMPTS,
    }
    if after is not None:
        options["after"] = after
    return subscribe(gateway, run_id, key, **options)


def stream_exit_code(exc: StreamError) -> int:
    """A refusal no retry can fix (bad key, unknown run, expired token) is
    refused; anything else means the gateway went away: unavailable."""
    return EXIT_REFUSED if exc.close_code in FATAL_CLOSE_CODES else EXIT_UNAVAILABLE
