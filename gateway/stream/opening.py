"""Opening one stream socket: the checks before its first frame.

Authenticate, hold one of the tenant's sockets on this gateway (admission,
1013 past the quota), check the resume token and its session or the
``from=`` cursor, ask the run directory, register a subscriber with the
tenant's live tail, fix the first offset, and issue the resume token. Every
refusal is a :class:`StreamClosed`; what the opening took before a refusal
(the socket count, the subscriber's place in the tail) is given back by
:meth:`Opening.release`, which the socket calls however far it got. The
running socket is ``connection.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.websockets import WebSocket

from gateway.cursor import Cursor, CursorError
from gateway.outages import KafkaUnavailable
from gateway.server.sink import FrameSink
from tidings.errors import CloseCode
from tidings.settings import GatewaySettings, KafkaSettings

from .acks import AckLedger
from .directory import CachedRunDirectory, RunInfo
from .errors import StreamClosed, try_again_later
from .hub import TailHub
from .metrics import StreamMetrics
from .sessions import Session, SessionStore
from .subscriber import Subscriber
from .tail import TenantTail
from .tokens import Claims, TokenSigner, new_session_id

if TYPE_CHECKING:
    from gateway.access import AccessControl

T = TypeVar("T")

# Events are stamped by the emitter's clock; seek a little before the run's
# start so clock skew between hosts cannot hide its first events.
_CLOCK_SKEW_MS = 60_000
# A Kafka that does not answer an offset lookup within this is taken as
# away: the socket is refused with 1013 rather than held for the client's
# request timeout.
_KAFKA_ANSWER_SECONDS = 5.0
# How long a socket closed with an error frame has to read it and answer the
# close before its connection is aborted (the default of the context's linger).
CLOSE_TIMEOUT_SECONDS = 10.0


@dataclass
class StreamContext:
    gateway: GatewaySettings
    kafka: KafkaSettings
    authenticate: Callable[[str], str | None]
    signer: TokenSigner
    sessions: SessionStore
    runs: CachedRunDirectory
    hub: TailHub
    metrics: StreamMetrics
    replay_slots: asyncio.Semaphore
    subscribers: set[Subscriber]
    stall_seconds: float
    acks: AckLedger
    # How long a socket closed with an error frame (4408 ...) has to read it
    # and answer the close before its connection is aborted.
    close_linger_seconds: float = CLOSE_TIMEOUT_SECONDS
    # TIDINGS_TENANTS_MAX_SOCKETS: sockets per tenant on this gateway, counted
    # from authentication to release (handshakes in progress included).
    max_sockets: int = 10_000
    open_sockets: dict[str, int] = field(default_factory=dict)
    # Read tokens as well as API keys (gateway/access.py); None: API keys only.
    access: AccessControl | None = None


@dataclass(frozen=True)
class Opened:
    """An open socket's start: its subscriber (registered with ``tail``), its
    run, its partition's end offset sampled after it registered, and its
    resume token with the claims it carries."""

    sub: Subscriber
    tail: TenantTail
    info: RunInfo
    end: int
    token: str
    claims: Claims


class Opening:
    def __init__(
        self, ws: WebSocket, run_id: str, ctx: StreamContext, sink: FrameSink | None
    ) -> None:
        self.ws = ws
        self.run_id = run_id
        self.ctx = ctx
        self.sink = sink
        # What has been taken so far, for release().
        self.admitted: str | None = None  # the tenant whose socket count this one holds
        self.tail: TenantTail | None = None
        self.sub: Subscriber | None = None

    async def open(self) -> Opened:
        ctx = self.ctx
        tenant = await self._authenticate()
        self._admit(tenant)
        token = self.ws.query_params.get("resume")
        start = self.ws.query_params.get("from")
        if token is not None and start is not None:
            raise StreamClosed(CloseCode.BAD_FRAME, "use either resume= or from=, not both")
        after: Cursor | None = None
        if start not in (None, "start", "now"):
            # (extension) from=<cursor>: re-watch a run from any position of its log.
            try:
                after = Cursor.decode(start)
            except CursorError:
                raise StreamClosed(
                    CloseCode.BAD_FRAME, "from= must be 'start', 'now' or a cursor of this run"
                ) from None
        session: Session | None = None
        if token is not None:
            claims = ctx.signer.verify(token)
            if claims.tenant != tenant:
                raise StreamClosed(CloseCode.FORBIDDEN, "resume token of another tenant")
            if claims.run_id != self.run_id:
                raise StreamClosed(CloseCode.FORBIDDEN, "resume token of another run")
            if ctx.acks.pending(claims.sid):
                # Its last socket's acks first: a resume starts right after them.
                await ctx.acks.settle(claims.sid)
            session = await ctx.sessions.load(claims.sid)
            if session is None:
                raise StreamClosed(CloseCode.TOKEN_EXPIRED, "resume session expired")
        info = await ctx.runs.lookup(tenant, self.run_id)
        if info is None:
            raise StreamClosed(CloseCode.UNKNOWN_RUN, f"unknown run {self.run_id[:64]}")
        self.tail = tail = await ctx.hub.tail(tenant)
        partition = session.partition if session else ctx.hub.partition_for(tail, self.run_id)
        self.sub = sub = Subscriber(
            tenant,
            self.run_id,
            partition,
            max_events=ctx.gateway.send_queue_max_events,
            max_bytes=ctx.gateway.send_queue_max_bytes,
            final_state=info.state if info.finished else None,
            watermarks=tail.watermarks,
            sink=self.sink,
            cork=tail.cork,
        )
        # Registered before any offset is sampled: see the hand-over proof in replay.py.
        tail.add(sub)
        ctx.subscribers.add(sub)
        if start == "now" and session is None:
            # Live only: the retention start is of no use, so it is not asked.
            end = await _kafka(ctx.hub.offsets.end(tail.topic, partition))
            earliest = end
        else:
            earliest, end = await _kafka(ctx.hub.offsets.bounds(tail.topic, partition))
        if session is not None:
            sub.next_offset = session.next_offset
            if session.next_offset < earliest:
                raise StreamClosed(
                    CloseCode.TOKEN_EXPIRED,
                    "events after your cursor are past Kafka retention; subscribe with from=start",
                )
            sid = session.sid
            await ctx.sessions.touch(sid)
            ctx.metrics.resumes.labels(tenant).inc()
        elif after is not None:
            sub.next_offset = _after_cursor(after, partition, earliest, end)
            sid = new_session_id()
            await ctx.sessions.create(Session(sid, tenant, self.run_id, partition, sub.next_offset))
        else:
            sub.next_offset = await self._first_offset(tail, info, partition, earliest, end, start)
            sid = new_session_id()
            await ctx.sessions.create(Session(sid, tenant, self.run_id, partition, sub.next_offset))
        text, claims = ctx.signer.issue(tenant, self.run_id, sid)
        return Opened(sub, tail, info, end, text, claims)

    def release(self) -> None:
        """Give back what the opening took: the tenant's socket count, and the
        subscriber's place in the tail (ending it first)."""
        if self.admitted is not None:
            left = self.ctx.open_sockets.get(self.admitted, 0) - 1
            if left > 0:
                self.ctx.open_sockets[self.admitted] = left
            else:
                self.ctx.open_sockets.pop(self.admitted, None)
            self.admitted = None
        if self.sub is not None:
            self.sub.fail(StreamClosed(CloseCode.NORMAL, "closed"))
            self.ctx.subscribers.discard(self.sub)
            if self.tail is not None:
                self.tail.remove(self.sub)

    def _admit(self, tenant: str) -> None:
        """Hold one of the tenant's sockets on this gateway, or refuse with 1013."""
        count = self.ctx.open_sockets.get(tenant, 0)
        if count >= self.ctx.max_sockets:
            self.ctx.metrics.quota_refusals.labels(tenant).inc()
            raise try_again_later(self.ctx.max_sockets)
        self.ctx.open_sockets[tenant] = count + 1
        self.admitted = tenant

    async def _authenticate(self) -> str:
        header = self.ws.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        in_query = scheme.lower() != "bearer" or not key
        if in_query:
            key = self.ws.query_params.get("access_token", "")
        if self.ctx.access is not None:
            return await self.ctx.access.for_stream(key.strip(), self.run_id, in_query=in_query)
        tenant = self.ctx.authenticate(key.strip()) if key else None
        if tenant is None:
            raise StreamClosed(CloseCode.UNAUTHORIZED, "missing or invalid API key")
        return tenant

    async def _first_offset(
        self,
        tail: TenantTail,
        info: RunInfo,
        partition: int,
        earliest: int,
        end: int,
        start: str | None,
    ) -> int:
        # No resume= and no from= means from the start: late subscribers missing
        # a run's first events is the top complaint about realtime streams.
        if start == "now":
            return end
        if info.started_at is None:
            return earliest
        since = int(info.started_at.timestamp() * 1000) - _CLOCK_SKEW_MS
        found = await _kafka(self.ctx.hub.offsets.first_at_or_after(tail.topic, partition, since))
        return end if found is None else max(found, earliest)


def _after_cursor(after: Cursor, partition: int, earliest: int, end: int) -> int:
    """The first offset of a ``from=<cursor>`` stream: the event after ``after``."""
    if after.partition != partition or after.offset >= end:
        # Another run's partition, or a position the log never had.
        raise StreamClosed(CloseCode.BAD_FRAME, f"not a cursor of this run: {after}")
    if after.offset + 1 < earliest:
        raise StreamClosed(
            CloseCode.TOKEN_EXPIRED,
            "events after your cursor are past Kafka retention; subscribe with from=start",
        )
    return after.offset + 1


async def _kafka(answer: Coroutine[Any, Any, T]) -> T:
    """``answer``, or :class:`KafkaUnavailable` once Kafka has not answered
    for :data:`_KAFKA_ANSWER_SECONDS` (the lookups are batched and shielded:
    giving up here cancels nobody else's)."""
    try:
        async with asyncio.timeout(_KAFKA_ANSWER_SECONDS):
            return await answer
    except TimeoutError:
        raise KafkaUnavailable(f"no answer within {_KAFKA_ANSWER_SECONDS:g} s") from None
