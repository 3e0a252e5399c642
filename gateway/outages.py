"""Which dependency an exception says is away, if any.

One answer for both edges: REST maps an outage to 503 with ``Retry-After``
(``gateway.rest.errors``), the stream to close 1013 with a retry hint
(``gateway.stream.connection``). Each client library says whether retrying
can help, and that is what is asked: Temporal's status codes, aiokafka's
``retriable``, redis-py's connection and timeout errors. Anything else is a
bug or a refusal, and stays a 500 / 1011 with its traceback.
"""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError, KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from temporalio.service import RPCError, RPCStatusCode

TEMPORAL = "Temporal"
KAFKA = "Kafka"
REDIS = "Redis"

# Temporal answers these when it is down or overloaded: the client may retry.
TEMPORAL_UNAVAILABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


class KafkaUnavailable(Exception):
    """Kafka did not answer within the gateway's deadline."""


def dependency_down(exc: BaseException) -> str | None:
    """``"Temporal"``, ``"Kafka"`` or ``"Redis"`` if ``exc`` shows that
    dependency unreachable (a retry later may succeed), else None."""
    if isinstance(exc, RPCError):
        return TEMPORAL if exc.status in TEMPORAL_UNAVAILABLE else None
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return REDIS
    if isinstance(exc, KafkaUnavailable | KafkaConnectionError):
        return KAFKA
    if isinstance(exc, KafkaError) and getattr(exc, "retriable", False):
        return KAFKA
    return None
