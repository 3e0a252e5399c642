"""The worker's own Prometheus metrics (the Temporal SDK's are added beside
them by ``workers.metrics_server``).

One registry per :class:`WorkerMetrics`, so two workers in one test process
do not collide. Every series is labelled by tenant where one applies; tenant
names are a bounded, configured set (API keys map to them), so cardinality
stays bounded too.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Emit latency runs from the emit call (including any quota wait) to the
# broker's acknowledgement: milliseconds normally, seconds when throttled.
_EMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tidings_worker_events_emitted",
            "Events written to tenant topics, by tenant and event type.",
            ["tenant", "type"],
            registry=r,
        )
        self.emit_seconds = Histogram(
            "tidings_worker_emit_seconds",
            "From emit call (including quota wait) to the broker's acknowledgement.",
            ["tenant"],
            buckets=_EMIT_BUCKETS,
            registry=r,
        )
        self.quota_delay = Counter(
            "tidings_worker_quota_delay_seconds",
            "Time events waited for the tenant's events/s quota (delayed, never dropped).",
            ["tenant"],
            registry=r,
        )
        self.dlq = Counter(
            "tidings_worker_dlq_records",
            "Records written to the dead-letter topic, by tenant and kind.",
            ["tenant", "kind"],
            registry=r,
        )
        self.hot_loops = Counter(
            "tidings_worker_hot_loop_alerts",
            "alert.hot_loop events: a step retried too often too fast.",
            ["tenant"],
            registry=r,
        )
        self.coalesced_tokens = Counter(
            "tidings_worker_coalesced_tokens",
            "Tokens sent inside a coalesced step.token record (lag was high).",
            ["tenant"],
            registry=r,
        )
        self.coalesced_records = Counter(
            "tidings_worker_coalesced_records",
            "Coalesced step.token records sent (each carries data.tokens tokens).",
            ["tenant"],
            registry=r,
        )
        self.emit_retries = Counter(
            "tidings_worker_emit_retries",
            "Records sent again because the event plane did not take them (an outage).",
            registry=r,
        )
        self.lag = Gauge(
            "tidings_worker_tenant_lag_records",
            "A tenant's event lag (records, slowest gateway) as last seen by the emitter.",
            ["tenant"],
            registry=r,
        )
