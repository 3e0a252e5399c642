"""The pipelines registry in Redis: what workers announce and gateways read.

A worker announces every pipeline it serves, at start and then every
``TIDINGS_WORKER_ANNOUNCE_SECONDS``: the spec (steps, input schema), its
version (a digest of the spec) and the task queue its workflow and activities
run on. Each announcement is one key with a TTL of three refresh periods, so
a pipeline no worker serves any more drops out of the listing on its own,
and a Redis that lost its data is refilled within one period. An index set
names the pipelines of a deployment (its Temporal namespace and task queue):
two deployments sharing a Redis never see each other's pipelines.

See docs/decisions/0007-pipelines-registry-in-redis.md for why Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from workflows.spec import PipelineSpec, SpecError, load_spec

log = logging.getLogger(__name__)

KEY_PREFIX = "tidings:pipelines"
# An announcement outlives this many missed refreshes.
TTL_PERIODS = 3


def index_key(namespace: str, task_queue: str) -> str:
    """The set of pipeline names announced on deployment ``(namespace, task_queue)``."""
    return f"{KEY_PREFIX}:{namespace}:{task_queue}"


def entry_key(namespace: str, task_queue: str, pipeline: str) -> str:
    return f"{index_key(namespace, task_queue)}:{pipeline}"


def spec_version(spec: PipelineSpec) -> str:
    """A digest of the spec: two workers announcing different versions show up as a change."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Announcement:
    spec: PipelineSpec
    task_queue: str
    worker: str = ""

    @property
    def version(self) -> str:
        return spec_version(self.spec)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.spec.name,
                "version": self.version,
                "task_queue": self.task_queue,
                "worker": self.worker,
                "spec": self.spec.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Announcement:
        """Parse one announcement; :class:`SpecError` says what is wrong with it."""
        try:
            record = json.loads(raw)
            task_queue = record["task_queue"]
            spec_raw = record["spec"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(f"unreadable pipeline announcement: {exc!r}") from None
        if not isinstance(task_queue, str) or not task_queue:
            raise SpecError("pipeline announcement: task_queue must be a non-empty string")
        spec = load_spec(spec_raw, source="pipeline announcement")
        return cls(spec, task_queue, str(record.get("worker", "")))


async def announce(
    redis: aioredis.Redis,
    namespace: str,
    base_queue: str,
    announcements: list[Announcement],
    ttl_seconds: int,
) -> None:
    """Write (or refresh) ``announcements`` in one transaction."""
    if not announcements:
        return
    pipe = redis.pipeline(transaction=True)
    for item in announcements:
        key = entry_key(namespace, base_queue, item.spec.name)
        pipe.set(key, item.to_json(), ex=ttl_seconds)
        pipe.sadd(index_key(namespace, base_queue), item.spec.name)
    await pipe.execute()


async def read(redis: aioredis.Redis, namespace: str, base_queue: str) -> list[Announcement]:
    """Every live announcement of the deployment; an unreadable one is logged and skipped."""
    raw_names: set[Any] = await redis.smembers(index_key(namespace, base_queue))
    names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in raw_names)
    if not names:
        return []
    values = await redis.mget([entry_key(namespace, base_queue, name) for name in names])
    found = []
    for name, raw in zip(names, values, strict=True):
        if raw is None:  # expired: no worker has refreshed it for TTL_PERIODS periods
            continue
        try:
            found.append(Announcement.from_json(raw))
        except SpecError as exc:
            log.warning("pipeline %r: skipping its announcement: %s", name, exc.message)
    return found
