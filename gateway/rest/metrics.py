"""Prometheus metrics of the REST API and the ``/metrics`` endpoint.

Each app gets its own registry (several apps in one test process must not
collide); ``/metrics`` also exposes the process-wide default registry, where
process metrics and any module-level metrics of other gateway parts live.
Requests are labelled by *route template* (``/v1/runs/{run_id}``), never by
raw path, so label cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tidings_gateway_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tidings_gateway_http_request_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.shed = Counter(
            "tidings_gateway_runs_shed",
            "POST /v1/runs answered 429, by tenant and reason (lag or concurrency).",
            ["tenant", "reason"],
            registry=self.registry,
        )
        self.tenant_lag = Gauge(
            "tidings_gateway_tenant_lag_records",
            "A tenant's event lag (records, slowest gateway) as last seen by admission.",
            ["tenant"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``unmatched`` (bounded cardinality)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    # The router records the matched route in the (shared) scope dict.
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), so streaming bodies and WebSockets pass
    through untouched; only HTTP requests are counted."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before answering
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
