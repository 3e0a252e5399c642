"""The gateway's long-lived clients and the dependencies that hand them to routes.

The application's lifespan builds one :class:`Services` container (see
``gateway.app``) and stores it on ``app.state``; routes never reach for a
global, they declare ``Annotated[..., Depends(...)]`` parameters, which keeps
every client swappable in tests (``app.dependency_overrides``).

:func:`connect_redis` makes the one Redis client a gateway process shares
(REST routes, resume sessions, lag). Its pool *blocks*: a burst of socket
opens waits, up to :data:`REDIS_TIMEOUT_SECONDS`, for a connection to come
free instead of closing sockets with 1011.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, cast

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from temporalio.client import Client

from gateway.kafka import KafkaFactory
from gateway.rest.limits import RunningCounts
from gateway.rest.starter import RunStarter
from tidings import redis_connect
from tidings.errors import Unavailable
from tidings.lag import LagReader
from tidings.settings import Settings

if TYPE_CHECKING:
    from gateway.rest.pipelines import PipelineCatalog
    from gateway.stream import RunIndex

# Redis must never hang a request: a dead Redis is a fast 503, not a stall.
REDIS_TIMEOUT_SECONDS = 5.0


def connect_redis(settings: Settings) -> aioredis.Redis:
    """The process's Redis client on a blocking pool of ``TIDINGS_REDIS_MAX_CONNECTIONS``
    (``tidings.redis_connect``: TLS, ACL users and Sentinel included).

    Connections are made on first use, so this is safe outside a running loop.
    """
    return redis_connect.connect_redis(settings.redis, timeout=REDIS_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class Services:
    """Everything a request may need, built once per process by the lifespan."""

    settings: Settings
    temporal: Client
    redis: aioredis.Redis
    kafka: KafkaFactory
    starter: RunStarter
    # Per-tenant event lag for admission (None: lag is not checked).
    lag: LagReader | None = None
    # The pipelines the workers announced (None: no orchestration plane installed).
    pipelines: PipelineCatalog | None = None
    # Recent counts of each tenant's open runs (None: asked on every start).
    run_counts: RunningCounts | None = None
    # Where started runs are recorded for every gateway's stream opens (None: not).
    run_index: RunIndex | None = None


# The dependencies are coroutines although nothing in them waits: FastAPI
# runs a plain function in its thread pool, so each would cost a request a
# hand-off to a thread and back, and, with the event loop busy, a wait for
# the GIL (docs/benchmarks.md, O3).


async def get_settings(request: Request) -> Settings:
    # Settings exist from create_app on (before the lifespan), so auth works
    # even while clients are still connecting.
    return cast(Settings, request.app.state.settings)


def services_of(app: FastAPI) -> Services:
    services = getattr(app.state, "services", None)
    if services is None:
        raise Unavailable("the gateway is starting or stopping")
    return cast(Services, services)


async def get_services(request: Request) -> Services:
    return services_of(request.app)


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_temporal(services: ServicesDep) -> Client:
    return services.temporal


async def get_redis(services: ServicesDep) -> aioredis.Redis:
    return services.redis


async def get_kafka(services: ServicesDep) -> KafkaFactory:
    return services.kafka


async def get_starter(services: ServicesDep) -> RunStarter:
    return services.starter


TemporalDep = Annotated[Client, Depends(get_temporal)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
KafkaDep = Annotated[KafkaFactory, Depends(get_kafka)]
StarterDep = Annotated[RunStarter, Depends(get_starter)]
