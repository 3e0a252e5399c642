"""The gateway application: ``create_app(settings)``.

The lifespan owns every long-lived client (Temporal, Redis, the Kafka
factory) in one :class:`gateway.rest.deps.Services` container on ``app.state``;
routes receive them through dependencies. Other parts of the gateway plug in
as *extensions* — an object with a ``router`` and ``async start()`` /
``async stop()`` — started after the shared clients exist and stopped before
they close. The WebSocket stream (``gateway.stream.StreamService``) is one:
it shares the app's Redis client, its metrics registry and, through
:class:`gateway.rest.run_directory.OwnedRunDirectory`, the REST routes' ownership
check; it authenticates with :func:`gateway.rest.auth.tenant_from_key`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from gateway.access import AccessControl
from gateway.kafka import KafkaFactory
from gateway.rest import deps, errors, health, metrics, runs, tokens_api
from gateway.rest import pipelines as pipelines_api
from gateway.rest.auth import tenant_from_key
from gateway.rest.body_limit import BodyLimitMiddleware
from gateway.rest.deps import Services, services_of
from gateway.rest.limits import RunningCounts
from gateway.rest.metrics import Metrics, MetricsMiddleware
from gateway.rest.pipelines import CatalogOpener
from gateway.rest.run_directory import OwnedRunDirectory
from gateway.rest.starter import RunStarter, no_starter
from gateway.server.memory import MemoryKeeper, malloc_trim
from gateway.stream import RunIndex, StreamService
from gateway.web import mount_dashboard
from tidings import temporal_connect
from tidings.lag import LagReader
from tidings.settings import Settings

log = logging.getLogger(__name__)

# Redis must never hang a request: a dead Redis is a fast 503, not a stall.
REDIS_TIMEOUT_SECONDS = deps.REDIS_TIMEOUT_SECONDS


class Extension(Protocol):
    """A part of the gateway with its own routes and background work."""

    router: APIRouter

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class StreamTimings:
    """How long the stream waits on a client that does not drain its queue
    before closing it with 4408, and on a closed socket's peer before aborting
    the connection. Tests shorten them to see both happen quickly."""

    stall_seconds: float = 30.0
    close_linger_seconds: float = 10.0


async def connect_temporal(settings: Settings) -> Client:
    # lazy=True: the gateway starts (and /readyz reports Temporal down) even
    # when Temporal is not up yet; the connection is made on first use.
    # The tracing interceptor carries the caller's span (POST /v1/runs) into
    # the workflow's headers, so the run's spans join the request's trace.
    return await temporal_connect.connect_temporal(
        settings.temporal, lazy=True, interceptors=[TracingInterceptor()]
    )


def connect_redis(settings: Settings) -> aioredis.Redis:
    # A blocking pool: a burst of socket opens waits for a connection instead
    # of failing with "Too many connections" (see gateway.rest.deps.connect_redis).
    return deps.connect_redis(settings)


def _native_telemetry_off() -> dict[str, Any]:
    """FastAPI (0.16x) makes its own OpenTelemetry spans when the SDK is
    installed, recording each request's query string: browsers put the API key
    there (``?access_token=``), so those spans would export a secret. Our spans
    (``POST /v1/runs``, the socket sends) carry no credentials; theirs are off.
    Older FastAPI has no ``telemetry`` argument and makes no spans."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {
        "telemetry": {"tracing": False, "operation_spans": False, "logs": False, "metrics": False}
    }


def create_app(
    settings: Settings,
    *,
    pipelines: CatalogOpener | None = None,
    starter: RunStarter | None = None,
    stream: bool = True,
    stream_timings: StreamTimings | None = None,
) -> FastAPI:
    """Build the gateway: REST routes, operations endpoints and, with ``stream``,
    the WebSocket stream (``gateway.stream.StreamService``).

    ``pipelines`` opens the orchestration plane's catalog (the entry point
    passes ``workers.catalog.open_catalog``); without it the gateway lists no
    pipelines. ``starter`` defaults to the catalog's ``start_run``, else to
    one that answers 503.
    Call it inside the event loop that will serve the app (uvicorn's
    ``factory=True`` does): the stream makes Kafka clients, which bind to the
    running loop when constructed.
    """
    metrics_ = Metrics()
    # Created here (not in the lifespan) because the stream service needs it to
    # build its router; the lifespan still owns its life and closes it.
    redis = connect_redis(settings)
    # Raises for a bad pipelines folder: better no gateway than one that 500s.
    catalog = pipelines(settings, redis) if pipelines is not None else None
    if starter is not None:
        run_starter = starter
    else:
        run_starter = catalog.start_run if catalog is not None else no_starter

    def temporal() -> Client:
        return services_of(app).temporal

    parts: list[Extension] = []

    # API keys and read tokens, for the REST routes (gateway.rest.auth) and the stream.
    def authenticate(key: str) -> str | None:
        return tenant_from_key(settings, key)

    access = AccessControl(settings, authenticate)
    ttl = settings.gateway.run_index_ttl_seconds
    run_index = RunIndex(redis, ttl_seconds=ttl) if ttl > 0 else None
    stream_service: StreamService | None = None
    if stream:
        timings = stream_timings or StreamTimings()
        # The stream's metrics land in this app's registry, so /metrics shows them.
        stream_service = StreamService(
            settings,
            redis,
            runs=OwnedRunDirectory(temporal),
            authenticate=authenticate,
            registry=metrics_.registry,
            access=access,
            stall_seconds=timings.stall_seconds,
            close_linger_seconds=timings.close_linger_seconds,
            index=run_index,
        )
        parts.append(stream_service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(redis.aclose)
            kafka = KafkaFactory(settings.kafka)
            stack.push_async_callback(kafka.close)
            lag = LagReader(redis, settings.kafka.topic_prefix)
            stack.push_async_callback(lag.close)
            if run_index is not None:
                stack.push_async_callback(run_index.close)
            app.state.services = Services(
                settings=settings,
                temporal=await connect_temporal(settings),
                redis=redis,
                kafka=kafka,
                starter=run_starter,
                lag=lag,
                pipelines=catalog,
                run_counts=RunningCounts(),
                run_index=run_index,
            )
            # Temporal's client holds no socket of ours to close: the SDK's
            # core runtime owns the connection.
            stack.callback(setattr, app.state, "services", None)
            if catalog is not None:
                # Reads the registry once (not ready until it has), then refreshes.
                await catalog.start()
                stack.push_async_callback(catalog.stop)
            for part in parts:
                await part.start()
                stack.push_async_callback(part.stop)
            if settings.gateway.memory_trim_seconds > 0:
                keeper = MemoryKeeper(
                    settings.gateway.memory_trim_seconds,
                    settings.gateway.memory_trim_growth_mib * 2**20,
                    trim=malloc_trim(),
                )
                await keeper.start()
                stack.push_async_callback(keeper.stop)
            log.info("gateway ready on %s", settings.gateway.base_url())
            yield

    app = FastAPI(
        title="Tidings gateway",
        version="1",
        summary="Start, watch and steer durable AI-agent runs.",
        lifespan=lifespan,
        **_native_telemetry_off(),
    )
    app.state.settings = settings
    app.state.metrics = metrics_
    app.state.access = access
    # What gateway.server.fast_path.StreamFirst hands stream sockets to.
    app.state.stream = stream_service
    errors.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(runs.router)
    app.include_router(pipelines_api.router)
    app.include_router(tokens_api.router)
    for part in parts:
        app.include_router(part.router)
    mount_dashboard(app)
    # Added last = outermost: count every request, then refuse oversize bodies.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.gateway.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics_)
    return app
