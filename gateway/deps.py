"""The gateway's long-lived clients and the dependencies that hand them to routes.

The application's lifespan builds one :class:`Services` container (see
``gateway.app``) and stores it on ``app.state``; routes never reach for a
global, they declare ``Annotated[..., Depends(...)]`` parameters, which keeps
every client swappable in tests (``app.dependency_overrides``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from temporalio.client import Client

from gateway.kafka import KafkaFactory
from gateway.starter import RunStarter
from tidings.errors import Unavailable
from tidings.lag import LagReader
from tidings.settings import Settings


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


def get_settings(request: Request) -> Settings:
    # Settings exist from create_app on (before the lifespan), so auth works
    # even while clients are still connecting.
    return cast(Settings, request.app.state.settings)


def services_of(app: FastAPI) -> Services:
    services = getattr(app.state, "services", None)
    if services is None:
        raise Unavailable("the gateway is starting or stopping")
    return cast(Services, services)


def get_services(request: Request) -> Services:
    return services_of(request.app)


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_temporal(services: ServicesDep) -> Client:
    return services.temporal


def get_redis(services: ServicesDep) -> aioredis.Redis:
    return services.redis


def get_kafka(services: ServicesDep) -> KafkaFactory:
    return services.kafka


def get_starter(services: ServicesDep) -> RunStarter:
    return services.starter


TemporalDep = Annotated[Client, Depends(get_temporal)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
KafkaDep = Annotated[KafkaFactory, Depends(get_kafka)]
StarterDep = Annotated[RunStarter, Depends(get_starter)]
