"""Liveness and readiness.

``/healthz`` answers while the process can serve at all (no dependencies:
a restart would not fix a dead Kafka). ``/readyz`` checks that Temporal,
Kafka and Redis each answer within :data:`CHECK_TIMEOUT`, concurrently, and
that the pipelines registry has been read (``pipelines``: until then the
gateway cannot start runs of announced pipelines); it answers 503 naming
every one that does not, so a load balancer stops sending traffic a replica
cannot serve.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.rest.deps import ServicesDep
from gateway.rest.errors import error_responses
from gateway.rest.schemas import Health, Readiness
from tidings.errors import ErrorCode

CHECK_TIMEOUT = 2.0

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any failure means "not reachable"; the type says why
        return f"unreachable ({type(exc).__name__})"
    return "ok"


@router.get("/readyz", response_model=Readiness, responses=error_responses(503))
async def readyz(services: ServicesDep) -> Readiness | JSONResponse:
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "temporal": services.temporal.service_client.check_health,
        "kafka": services.kafka.probe,
        "redis": services.redis.ping,
    }
    results = await asyncio.gather(*(_check(probe) for probe in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    if services.pipelines is not None:
        # Runs start only once the gateway knows what the workers serve.
        checks["pipelines"] = "ok" if services.pipelines.ready() else "registry not read yet"
    down = [name for name, result in checks.items() if result != "ok"]
    if not down:
        return Readiness(status="ready", checks=checks)
    body = {
        "error": {"code": ErrorCode.UNAVAILABLE, "message": f"not ready: {', '.join(down)} down"},
        "checks": checks,
    }
    return JSONResponse(body, status_code=503)
