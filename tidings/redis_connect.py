"""The one way a Tidings process makes its Redis client, from :class:`RedisSettings`.

Every Redis user (gateway sessions and REST, the workers' pipelines registry,
the run-close watcher's claims, lag, the CLI, the bench) goes through
:func:`connect_redis`, so ``rediss://``, ACL users and Sentinel work for all of
them at once.

The pool *blocks*: redis-py's default asyncio pool raises "Too many
connections" past its size, so a burst of socket opens (each reads and writes
a session) would fail; a blocking pool makes them wait, up to ``timeout``, for a
connection to come free. With Sentinel the pool asks the sentinels for the
master whenever it opens a connection, so after a failover new connections go
to the promoted replica (redis-py's ``master_for``).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from tidings.errors import ConfigError
from tidings.settings import RedisSettings

DEFAULT_TIMEOUT_SECONDS = 5.0
PREFLIGHT_TIMEOUT_SECONDS = 3.0


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's master discovery, with the blocking pool's wait for a free connection."""


def connect_redis(
    settings: RedisSettings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> aioredis.Redis:
    """A client on a blocking pool of ``TIDINGS_REDIS_MAX_CONNECTIONS``.

    ``timeout`` bounds connecting, each command, and the wait for a pooled
    connection: a dead Redis is a fast error, never a stall. Connections are
    made on first use, so this is safe outside a running loop.
    """
    options: dict[str, Any] = {
        "max_connections": settings.max_connections,
        "timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
    }
    if settings.username:
        options["username"] = settings.username
    if settings.password.get_secret_value():
        options["password"] = settings.password.get_secret_value()
    if settings.is_tls and settings.tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.tls_ca_file)
    url = settings.url.get_secret_value()
    if not settings.sentinels:
        pool = aioredis.BlockingConnectionPool.from_url(url, **options)
        return aioredis.Redis.from_pool(pool)
    return _sentinel_client(settings, url, options)


def _sentinel_client(settings: RedisSettings, url: str, options: dict[str, Any]) -> aioredis.Redis:
    parts = urlsplit(url)
    if parts.username and "username" not in options:
        options["username"] = unquote(parts.username)
    if parts.password and "password" not in options:
        options["password"] = unquote(parts.password)
    path = parts.path.lstrip("/")
    options["db"] = int(path) if path.isdigit() else 0
    if settings.is_tls:
        options["ssl"] = True
    # The sentinels themselves: same TLS, no data credentials (a sentinel has
    # its own users; most deployments leave them open on the private network).
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": options["socket_connect_timeout"],
        "socket_timeout": options["socket_timeout"],
    }
    if settings.is_tls:
        sentinel_options["ssl"] = True
        if "ssl_ca_certs" in options:
            sentinel_options["ssl_ca_certs"] = options["ssl_ca_certs"]
    addresses = []
    for item in settings.sentinels:
        host, _, port = item.rpartition(":")
        addresses.append((host, int(port)))
    sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options)
    client: aioredis.Redis = sentinel.master_for(
        settings.sentinel_master,
        redis_class=aioredis.Redis,
        connection_pool_class=_BlockingSentinelPool,
        **options,
    )
    return client


async def check_credentials(settings: RedisSettings) -> None:
    """One PING: :class:`ConfigError` if Redis refuses the credentials or TLS;
    nothing if it cannot be reached at all (it may come up later)."""
    client = connect_redis(settings, timeout=PREFLIGHT_TIMEOUT_SECONDS)
    try:
        await client.ping()
    except AuthenticationError as exc:
        raise ConfigError(
            f"Redis refused the credentials ({_first_line(exc)}); check TIDINGS_REDIS_USERNAME "
            "and TIDINGS_REDIS_PASSWORD, or the user and password in TIDINGS_REDIS_URL"
        ) from None
    except ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConfigError(
                f"Redis needs credentials ({_first_line(exc)}); set TIDINGS_REDIS_USERNAME and "
                "TIDINGS_REDIS_PASSWORD, or put them in TIDINGS_REDIS_URL"
            ) from None
        raise
    except (RedisConnectionError, TimeoutError, OSError) as exc:
        if isinstance(exc.__cause__ or exc.__context__, ssl.SSLError) or "SSL" in str(exc):
            raise ConfigError(
                f"TLS to Redis failed ({_first_line(exc)}); check TIDINGS_REDIS_URL's scheme "
                "(rediss:// is TLS) and TIDINGS_REDIS_TLS_CA_FILE"
            ) from None
    finally:
        await client.aclose()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
