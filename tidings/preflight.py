"""Checks an entry point runs before it starts serving: settings that cannot
work stop the process there, with a message naming the variables, rather than
as a stream of errors once it runs.

Only a definite refusal stops it (TLS at a plaintext port, a certificate or
password the server rejects). A server that is not up yet does not: the
gateway reports it on ``/readyz`` and connects once it is.
"""

from __future__ import annotations

import asyncio

from tidings.kafka_connection import verify as verify_kafka
from tidings.redis_connect import check_credentials
from tidings.settings import Settings
from tidings.temporal_connect import probe_tls


async def _check(settings: Settings) -> None:
    if settings.temporal.uses_tls:
        await probe_tls(settings.temporal)
    await check_credentials(settings.redis)
    # A refused SASL login or a broker certificate the CA does not vouch for.
    await verify_kafka(settings.kafka)


def check_connections(settings: Settings) -> None:
    """Raise :class:`~tidings.errors.ConfigError` for a connection setting a server refuses."""
    asyncio.run(_check(settings))
