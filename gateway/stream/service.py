"""The stream service: what an app mounts to serve ``GET /v1/runs/{id}/stream``.

Wiring (``create_app``): build it with the app's settings, its Redis client
and a :class:`RunDirectory`, ``include_router(service.router)``, and await
:meth:`StreamService.start` / :meth:`StreamService.stop` in the lifespan.
Serve with ``ws_per_message_deflate=False`` (deflate costs 3-4x throughput),
``ws_max_size`` near ``GatewaySettings.max_frame_bytes``, and
``ws=gateway.server.ws_protocol.DirectFramesProtocol`` so sockets write shared frames
straight to their transports (``sink.py``); under other servers they send
through ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, WebSocket
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from gateway.lag import gateway_id as lag_field
from tidings.runs import STREAM_PATH
from tidings.settings import Settings

from .acks import AckLedger

if TYPE_CHECKING:
    from gateway.access import AccessControl

from .connection import StreamContext, serve
from .directory import CachedRunDirectory, RunDirectory
from .errors import going_away
from .hub import TailHub
from .metrics import StreamMetrics
from .run_index import RunIndex
from .sessions import SessionStore
from .subscriber import Subscriber
from .tokens import TokenSigner


class StreamService:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        runs: RunDirectory,
        authenticate: Callable[[str], str | None] | None = None,
        registry: CollectorRegistry | None = None,
        max_concurrent_replays: int = 32,
        stall_seconds: float = 30.0,
        close_linger_seconds: float = 10.0,
        tail_idle_seconds: float = 60.0,
        gateway_id: str | None = None,
        access: AccessControl | None = None,
        index: RunIndex | None = None,
    ) -> None:
        """``authenticate`` maps an API key to its tenant (default: the
        settings' key table; ``create_app`` passes its constant-time lookup).
        ``stall_seconds``: how long a client may leave its queue undrained
        while its reader waits (catch-up) or its tenant's tail is paused,
        before it is closed with 4408. ``close_linger_seconds``: how long a
        socket closed with an error has to read it and answer the close
        before its connection is aborted (its kernel buffers freed).
        ``gateway_id``: this replica's field in the Redis lag hashes (default:
        host and ``settings.gateway.port``). ``access``: accept read tokens
        too (``gateway.access``); without it only ``authenticate``'s API keys.
        ``index``: runs any gateway has started or looked up (``run_index.py``),
        asked before Temporal."""
        gateway = settings.gateway
        self.subscribers: set[Subscriber] = set()
        self.metrics = StreamMetrics(self._socket_depths, registry, tails=self._tail_watermarks)
        self._hub = TailHub(
            settings.kafka,
            self.metrics,
            idle_seconds=tail_idle_seconds,
            buffer_high_bytes=gateway.buffer_high_bytes,
            buffer_low_bytes=gateway.buffer_low_bytes,
            stall_seconds=stall_seconds,
            lag_redis=redis,
            gateway_id=gateway_id if gateway_id is not None else lag_field(gateway.port),
        )
        sessions = SessionStore(redis, ttl_seconds=gateway.token_ttl_seconds)
        self._acks = AckLedger(sessions.advance_many, interval=gateway.ack_flush_ms / 1000)
        self._ctx = StreamContext(
            gateway=gateway,
            kafka=settings.kafka,
            authenticate=authenticate or settings.tenants.tenant_for,
            signer=TokenSigner(
                gateway.token_secret.get_secret_value(),
                [s.get_secret_value() for s in gateway.token_secrets_previous],
                ttl_seconds=gateway.token_ttl_seconds,
            ),
            sessions=sessions,
            runs=CachedRunDirectory(runs, index=index, counted=self._count_lookup),
            hub=self._hub,
            metrics=self.metrics,
            replay_slots=asyncio.Semaphore(max_concurrent_replays),
            subscribers=self.subscribers,
            stall_seconds=stall_seconds,
            max_sockets=settings.tenants.max_sockets,
            access=access,
            acks=self._acks,
            close_linger_seconds=close_linger_seconds,
        )
        self._janitor: asyncio.Task[None] | None = None
        self.router = APIRouter()
        self.router.add_api_websocket_route(STREAM_PATH, self.serve)

    def _count_lookup(self, source: str) -> None:
        self.metrics.run_lookups.labels(source).inc()

    async def start(self) -> None:
        self._janitor = asyncio.create_task(self._reap_idle_tails())

    async def stop(self) -> None:
        """Close every socket with 1001 (clients resume elsewhere) and stop the tails."""
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for sub in list(self.subscribers):
            sub.fail(going_away())
        await self._hub.stop(going_away())
        await self._acks.close()

    async def going_away(self, within: float) -> int:
        """Close every socket with 1001 and its reason, and wait (up to
        ``within`` seconds) until their handlers have ended, so a server
        shutting down after this finds no socket left to close its own way.
        The tails keep running (``stop`` ends them). Returns the sockets
        still open when the time ran out."""
        for sub in list(self.subscribers):
            sub.fail(going_away())
        deadline = asyncio.get_running_loop().time() + within
        while self.subscribers and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            # The handlers discard their subscriber as they end; there is no
            # event to wait on for "the set is empty", and this runs once.
            await asyncio.sleep(0.02)
        return len(self.subscribers)

    async def serve(self, websocket: WebSocket, run_id: str) -> None:
        """Serve one stream socket (what the route calls; ``gateway.server.fast_path``
        calls it without the route)."""
        await serve(websocket, run_id, self._ctx)

    async def _reap_idle_tails(self) -> None:
        while True:
            await asyncio.sleep(10)
            await self._hub.reap()

    def _socket_depths(self) -> Iterator[tuple[str, int]]:
        for sub in list(self.subscribers):
            yield sub.tenant, sub.depth

    def _tail_watermarks(self) -> Iterator[tuple[str, int, int]]:
        return self._hub.watermarks()
