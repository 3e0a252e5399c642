"""What the client-side commands share: gateway options, one HTTP call with
errors turned into one-line messages, and the exit codes (docs/cli.md).

Exit codes of ``run``, ``watch`` and ``events``:

- 0: done (``run``: started; ``watch``/``--watch``: the run completed);
- 1: the watched run failed, was cancelled, terminated or timed out;
- 2: refused: bad arguments or input JSON, an unknown pipeline or run, input
  that fails the pipeline's schema, a bad API key, a bad or expired cursor;
- 3: unavailable: the gateway cannot be reached, answers 503 or 429, or the
  stream was lost and could not be resumed;
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
DEFAULT_API_KEY = "dev-key-demo"  # the local stack's demo tenant (docs/design.md)
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_REFUSED = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

# HTTP statuses a retry later may fix.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class CommandError(Exception):
    """A failure to report on stderr as one line, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway",
        default=os.environ.get("TIDINGS_GATEWAY_URL", DEFAULT_GATEWAY),
        help=f"gateway URL (default: $TIDINGS_GATEWAY_URL or {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="API key (default: $TIDINGS_API_KEY, else the local dev key)",
    )


def api_key(args: argparse.Namespace) -> str:
    key: str = args.api_key or os.environ.get("TIDINGS_API_KEY") or DEFAULT_API_KEY
    return key


def client(args: argparse.Namespace) -> httpx.Client:
    return httpx.Client(
        base_url=str(args.gateway).rstrip("/"),
        headers={"Authorization": f"Bearer {api_key(args)}"},
        timeout=HTTP_TIMEOUT,
    )


def unreachable(base_url: object, exc: BaseException | None = None) -> CommandError:
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return CommandError(
        f"cannot reach the gateway at {base_url}{why}; is it running? (`tidings up` starts one)",
        EXIT_UNAVAILABLE,
    )


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; a transport or HTTP error becomes a :class:`CommandError`
    carrying the gateway's error code and message (never the API key)."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise unreachable(http.base_url, exc) from None
    if response.is_error:
        code = EXIT_UNAVAILABLE if response.status_code in _TRANSIENT else EXIT_REFUSED
        raise CommandError(describe_error(response), code)
    return response


def describe_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        message = f"{error['code']}: {error['message']} (HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        return f"{message}; pass --api-key or set $TIDINGS_API_KEY"
    retry = response.headers.get("Retry-After")
    return f"{message}; retry after {retry}s" if retry else message


def run_command(
    prog: str, args: argparse.Namespace, body: Callable[[argparse.Namespace], int]
) -> int:
    """Run ``body(args)``: a :class:`CommandError` becomes one line on stderr
    and its exit code; Ctrl-C exits 130."""
    try:
        return body(args)
    except CommandError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
