"""The worker's ``/metrics``: our series and the Temporal SDK's on one port.

The SDK's metrics (workflow/activity task latencies, poll counts, sticky
cache, …) come from its Rust core, which can only serve them on an HTTP
endpoint of its own (``PrometheusConfig``). That endpoint is bound to
loopback on a private port, and a collector here re-reads it at each scrape,
so Prometheus has one target per worker and the SDK's port never leaves the
host.
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger(__name__)

SDK_SCRAPE_TIMEOUT_SECONDS = 2.0


def _loopback_port() -> int:
    # The SDK takes an address, not a socket: ask the kernel for a free port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sdk_runtime(port: int) -> Runtime:
    """A Temporal runtime whose SDK metrics are served on ``127.0.0.1:port``."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{port}",
                # Seconds and _total suffixes: the same conventions as ours.
                durations_as_seconds=True,
                counters_total_suffix=True,
            )
        )
    )


class SdkMetrics:
    """A collector that re-exposes the SDK endpoint's series (empty if it is down)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS) as answer:  # noqa: S310 (our own loopback URL)
                text = answer.read().decode()
        except OSError as exc:
            log.warning("cannot read the Temporal SDK metrics (%s)", exc)
            return
        yield from text_string_to_metric_families(text)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: Thread
    runtime: Runtime
    url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` plus the SDK's metrics on ``host:port``; connect the
    worker's Temporal client with the returned ``runtime``."""
    sdk_port = _loopback_port()
    runtime = sdk_runtime(sdk_port)
    registry.register(SdkMetrics(f"http://127.0.0.1:{sdk_port}/metrics"))
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address[1]
    log.info("worker metrics on http://%s:%s/metrics", host, bound)
    return MetricsServer(server, thread, runtime, f"http://{host}:{bound}/metrics")
