"""Python client: start a run, follow its event stream (``GET /v1/runs/{id}/stream``),
and fold the events into the run's state (:func:`reduce_run`, the same rules as
the JavaScript client's ``reduceRun``).

    run = await start_run("http://127.0.0.1:8000", api_key, "research", {"question": "?"})

    async with subscribe("http://127.0.0.1:8000", run_id, api_key) as sub:
        async for event in sub:
            ...

The subscription reconnects on its own (exponential backoff with full jitter,
a bounded number of consecutive attempts) and resumes with its token, so the
loop sees every event of the run once, in order, and ends after the run's
terminal event. An event counts as processed when the loop asks for the next
one; processed cursors are acked every ``ack_every`` events or
``ack_interval`` seconds. Events re-sent after a reconnect (sent but not yet
acked) are dropped by id. Nothing is dropped silently: a refusal that a retry
cannot fix (bad key, unknown run, expired token) raises :class:`StreamError`.
A gateway at the tenant's socket quota, or missing a dependency, closes with
1013 (Try Again Later): the subscription waits at least ``try_later_delay``,
or the error frame's ``retry_after`` if longer (jittered), and tries the next
gateway, within the same bounded number of attempts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tidings.errors import CloseCode, TidingsError
from tidings.events import EnvelopeError, Event
from tidings.run_state import initial_run_state, reduce_run
from tidings.runs import stream_path

__all__ = [
    "StartedRun",
    "StreamError",
    "Subscription",
    "initial_run_state",
    "reduce_run",
    "start_run",
    "stream_url",
    "subscribe",
]

log = logging.getLogger(__name__)

# Close codes after which reconnecting with the same token cannot succeed.
FATAL_CLOSE_CODES = frozenset(
    {
        CloseCode.BAD_FRAME,
        CloseCode.UNAUTHORIZED,
        CloseCode.FORBIDDEN,
        CloseCode.UNKNOWN_RUN,
        CloseCode.TOKEN_EXPIRED,
        CloseCode.MESSAGE_TOO_BIG,
    }
)
# Close codes of a gateway at a limit (1013: the tenant's socket quota on that
# replica): retry, on the next gateway, after at least ``try_later_delay``.
RETRY_LATER_CLOSE_CODES = frozenset({CloseCode.TRY_AGAIN_LATER})
_ABNORMAL = 1006


class StreamError(TidingsError):
    """The stream ended without the run's end: ``close_code`` says why."""

    def __init__(self, message: str, *, close_code: int = _ABNORMAL) -> None:
        super().__init__(message)
        self.close_code = close_code


def stream_url(base: str, run_id: str) -> str:
    """``ws(s)://host/v1/runs/<id>/stream`` for a gateway base URL (http(s) or ws(s))."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a gateway URL: {base!r}")
    path = parts.path.rstrip("/") + stream_path(quote(run_id, safe=""))
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Subscription:
    def __init__(
        self,
        gateways: str | Sequence[str],
        run_id: str,
        api_key: str,
        *,
        from_start: bool = True,
        after: str | None = None,
        resume_token: str | None = None,
        ack_every: int = 50,
        ack_interval: float = 1.0,
        max_attempts: int = 8,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        open_timeout: float = 10.0,
        close_timeout: float = 10.0,
        try_later_delay: float = 1.0,
    ) -> None:
        """``gateways``: one base URL, or several tried in turn on reconnect.
        ``from_start``: replay the run from its first event (else live from now);
        ``after``: a cursor (from an event frame or ``GET /events``): start with
        the event after it instead. Both are ignored when resuming with ``resume_token``."""
        urls = [gateways] if isinstance(gateways, str) else list(gateways)
        if not urls:
            raise ValueError("at least one gateway URL is needed")
        self.run_id = run_id
        self.token = resume_token
        self.status: str | None = None  # the run's final status, after the end frame
        self.caught_up = False
        # Called once the replay is done (the ``caught_up`` frame), before any
        # live event: a reader that held back part of the history shows it then.
        self.on_caught_up: Callable[[], None] | None = None
        self.cursor: str | None = None  # of the last event yielded (for from=<cursor> later)
        self.reconnects = 0
        self._urls = [stream_url(url, run_id) for url in urls]
        self._url_index = 0
        self._api_key = api_key
        self._from = after if after is not None else "start" if from_start else "now"
        self._ack_every = ack_every
        self._ack_interval = ack_interval
        self._max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max)
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout  # waiting for the gateway's close frame
        self._try_later_delay = try_later_delay
        self._floor = 0.0  # least wait before the next attempt (after a 1013)
        self._refusal: tuple[int, str] | None = None  # the last retryable refusal
        self._ws: ClientConnection | None = None
        self._attempts = 0
        self._connections = 0
        self._seen: set[str] = set()
        self._yielded: tuple[int, str] | None = None  # (connection, cursor) of the last event
        self._ackable: str | None = None
        self._acked: str | None = None
        self._unacked = 0
        self._error: tuple[str, str] | None = None
        self._retry_after = 0.0  # the last error frame's hint, in seconds
        self._done = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._yielded is not None:
            await self._processed(*self._yielded)
            self._yielded = None
        while not self._done:
            if self._ws is None:
                await self._connect()
            assert self._ws is not None
            try:
                raw = await self._receive(self._ws)
            except ConnectionClosed as exc:
                self._closed(exc)
                continue
            event = await self._frame(raw)
            if event is not None:
                return event
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._done = True
        if self._ws is not None:
            await self._flush_acks()
            await self._ws.close()
            self._ws = None

    async def _receive(self, ws: ClientConnection) -> str | bytes:
        while True:
            try:
                return await asyncio.wait_for(ws.recv(), self._ack_interval)
            except TimeoutError:
                await self._flush_acks()

    async def _frame(self, raw: str | bytes) -> Event | None:
        frame: dict[str, Any] = json.loads(raw)
        kind = frame.get("kind")
        if kind == "event":
            cursor = str(frame["cursor"])
            try:
                event = Event.from_dict(frame["event"])
            except EnvelopeError as exc:
                raise StreamError(f"unreadable event at {cursor}: {exc}") from None
            if event.id in self._seen:
                await self._processed(self._connections, cursor)  # already handled
                return None
            self._seen.add(event.id)
            self._yielded = (self._connections, cursor)
            self.cursor = cursor
            return event
        if kind == "token":
            self.token = str(frame["token"])
            self._attempts = 0  # the gateway accepted us: reset the backoff
            self._refusal = None
        elif kind == "caught_up":
            first = not self.caught_up
            self.caught_up = True
            if first and self.on_caught_up is not None:
                self.on_caught_up()
        elif kind == "end":
            self.status = str(frame["status"])
            await self.aclose()
        elif kind == "error":
            self._error = (str(frame.get("code")), str(frame.get("message")))
            hint = frame.get("retry_after")
            self._retry_after = float(hint) if isinstance(hint, int | float) else 0.0
        else:
            log.warning("ignoring unknown frame kind %r from the gateway", kind)
        return None

    async def _processed(self, connection: int, cursor: str) -> None:
        # A cursor can only be acked on the connection that sent it (the
        # gateway refuses acks for cursors it has not sent on that socket).
        if connection != self._connections:
            return
        self._ackable = cursor
        self._unacked += 1
        if self._unacked >= self._ack_every:
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        if self._ws is None or self._ackable is None or self._ackable == self._acked:
            return
        try:
            await self._ws.send(json.dumps({"ack": self._ackable}))
        except ConnectionClosed:
            return  # the next receive sees the close
        self._acked, self._unacked = self._ackable, 0

    def _closed(self, exc: ConnectionClosed) -> None:
        self._ws = None
        code = exc.rcvd.code if exc.rcvd is not None else _ABNORMAL
        error, self._error = self._error, None
        hint, self._retry_after = self._retry_after, 0.0
        if code in FATAL_CLOSE_CODES:
            reason = error[1] if error else (exc.rcvd.reason if exc.rcvd else "")
            raise StreamError(f"stream refused ({code}): {reason}", close_code=code)
        self.reconnects += 1
        self._url_index += 1
        detail = error[1] if error else ""
        if code in RETRY_LATER_CLOSE_CODES:
            self._floor = max(self._try_later_delay, hint)
            self._refusal = (code, detail)
        log.info("stream of %s closed (%s %s); resuming", self.run_id, code, detail)

    async def _connect(self) -> None:
        last: BaseException | None = None
        while self._attempts < self._max_attempts:
            if self._attempts or self._floor:
                initial, ceiling = self._backoff
                delay = random.uniform(0, min(ceiling, initial * 2**self._attempts))
                if self._floor:
                    # The gateway asked us to come back later: never sooner than the floor.
                    delay, self._floor = max(delay, random.uniform(0.5, 1.0) * self._floor), 0.0
                await asyncio.sleep(delay)
            self._attempts += 1
            url = self._urls[self._url_index % len(self._urls)]
            query = f"resume={quote(self.token)}" if self.token else f"from={quote(self._from)}"
            try:
                self._ws = await connect(
                    f"{url}?{query}",
                    additional_headers={"Authorization": f"Bearer {self._api_key}"},
                    open_timeout=self._open_timeout,
                    close_timeout=self._close_timeout,
                    compression=None,
                    max_size=2**24,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (408, 429):
                    raise StreamError(f"gateway refused the stream: HTTP {status}") from None
                last = exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                last = exc
            else:
                self._connections += 1
                self._ackable, self._acked, self._unacked = None, None, 0
                return
            self._url_index += 1
        if self._refusal is not None:
            code, reason = self._refusal
            raise StreamError(
                f"gateways kept refusing the stream ({code}) after {self._attempts} attempts: "
                f"{reason}",
                close_code=code,
            )
        raise StreamError(f"could not reach a gateway after {self._attempts} attempts: {last}")


@asynccontextmanager
async def subscribe(
    gateways: str | Sequence[str], run_id: str, api_key: str, **options: Any
) -> AsyncIterator[Subscription]:
    """A :class:`Subscription` to ``run_id``, closed on exit (see its options)."""
    subscription = Subscription(gateways, run_id, api_key, **options)
    try:
        yield subscription
    finally:
        await subscription.aclose()


@dataclass(frozen=True)
class StartedRun:
    """``POST /v1/runs``' answer. ``stream_token`` reads this run only: hand it
    to a browser instead of the API key (docs/clients.md)."""

    run_id: str
    status: str
    stream_url: str
    temporal_ui_url: str
    stream_token: str | None


async def start_run(
    gateway: str,
    api_key: str,
    pipeline: str,
    input: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 (the HTTP client's timeout, passed on)
) -> StartedRun:
    """Start a run; the same ``idempotency_key`` always answers the same run.
    A refusal raises :class:`TidingsError` with the gateway's code and status."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    async with httpx.AsyncClient(base_url=gateway, timeout=timeout) as http:
        response = await http.post(
            "/v1/runs", headers=headers, json={"pipeline": pipeline, "input": dict(input)}
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = body.get("error") or {} if isinstance(body, dict) else {}
        raise TidingsError(
            str(error.get("message") or f"HTTP {response.status_code}"),
            code=str(error.get("code") or "http_error"),
            status=response.status_code,
        )
    return StartedRun(
        run_id=body["run_id"],
        status=body["status"],
        stream_url=body["stream_url"],
        temporal_ui_url=body["temporal_ui_url"],
        stream_token=body.get("stream_token"),
    )
