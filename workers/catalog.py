"""A gateway's view of the pipelines it can start: the built-ins, a local
folder if one is configured (kept for compatibility; a bad one stops the
gateway at start) and what workers announced in Redis (:mod:`workers.announce`),
which wins over both. The gateway's entry point (``gateway.server.command``)
passes :func:`open_catalog` to ``create_app`` (``gateway.rest.pipelines``), so
the connection plane below it never imports workflow code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from temporalio.client import Client

from tidings.errors import Unavailable
from tidings.settings import Settings
from workers import announce
from workflows.registry import PipelineRegistry
from workflows.spec import PipelineSpec
from workflows.start import start_run

log = logging.getLogger(__name__)

# An unknown pipeline name re-reads the registry at most this often, so a
# pipeline announced a moment ago starts at once and junk names cost little.
MISS_REFRESH_SECONDS = 1.0


def check_local(settings: Settings) -> PipelineRegistry:
    """The built-ins plus the configured folder; :class:`SpecError` names the
    variable, file and field of a bad one."""
    return PipelineRegistry.with_builtins(settings.worker.pipelines_dir)


class PipelineCatalog:
    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._local = check_local(settings)
        self._registry = self._local
        self._versions: dict[str, str] = {}
        self._loaded = False
        self._last_miss = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def ready(self) -> bool:
        """Whether the registry has been read since start (a gateway that has
        not cannot know what the workers serve)."""
        return self._loaded

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> bool:
        async with self._lock:
            base = self._settings.temporal.task_queue
            try:
                found = await announce.read(self._redis, self._settings.temporal.namespace, base)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("cannot read the pipelines registry (%s)", type(exc).__name__)
                return False
            registry = self._local.copy()
            for item in found:
                registry.register(item.spec, task_queue=item.task_queue, replace=True)
            self._registry = registry
            self._versions = {item.spec.name: item.version for item in found}
            self._loaded = True
            return True

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.gateway.pipelines_refresh_seconds)
            await self.refresh()

    def pipelines(self) -> list[dict[str, Any]]:
        base = self._settings.temporal.task_queue
        return [
            describe(
                spec,
                self._versions.get(spec.name) or announce.spec_version(spec),
                self._registry.task_queue(spec.name, base),
                announced=spec.name in self._versions,
            )
            for spec in self._registry.specs()
        ]

    async def start_run(
        self,
        client: Client,
        settings: Settings,
        tenant: str,
        pipeline: str,
        input: dict[str, Any],
        idempotency_key: str | None,
    ) -> tuple[str, bool]:
        if pipeline not in self._registry.names():
            now = time.monotonic()
            if now - self._last_miss >= MISS_REFRESH_SECONDS:
                self._last_miss = now
                await self.refresh()
            if not self._loaded and pipeline not in self._registry.names():
                # Not "unknown": a worker may well serve it; we cannot tell yet.
                raise Unavailable(
                    f"cannot tell whether pipeline {pipeline!r} exists: "
                    "the pipelines registry (Redis) has not been read yet"
                )
        return await start_run(
            client, settings, tenant, pipeline, input, idempotency_key, registry=self._registry
        )


def describe(
    spec: PipelineSpec, version: str, task_queue: str, *, announced: bool
) -> dict[str, Any]:
    """One pipeline as ``GET /v1/pipelines`` lists it."""
    return {
        "name": spec.name,
        "description": spec.description,
        "version": version,
        "task_queue": task_queue,
        "announced": announced,
        "input": {
            name: field.model_dump(mode="json", exclude_defaults=False)
            for name, field in spec.input.items()
        },
        "steps": [
            {
                "name": step.name,
                "kind": step.kind,
                "activity": step.activity,
                "parallel_group": step.parallel_group,
                "for_each": step.for_each,
            }
            for step in spec.steps
        ],
        "stages": [[step.name for step in stage] for stage in spec.stages()],
    }


def open_catalog(settings: Settings, redis: aioredis.Redis) -> PipelineCatalog:
    return PipelineCatalog(settings, redis)
