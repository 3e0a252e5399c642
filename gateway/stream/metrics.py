"""Prometheus metrics of the stream: one set per :class:`StreamService`.

They live in the registry the app passes in (or a private one), so two
services in one process (tests run two gateways) do not collide in the global
registry. Together they give the per-tenant latency chain: emit -> socket
(end to end), Kafka lag -> send queue -> socket write, and the backpressure
state: bytes buffered for each tenant's sockets and the partitions paused
because of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

_WRITE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class StreamMetrics:
    def __init__(
        self,
        sockets: Callable[[], Iterable[tuple[str, int]]],
        registry: CollectorRegistry | None = None,
        tails: Callable[[], Iterable[tuple[str, int, int]]] | None = None,
    ) -> None:
        """``sockets`` yields (tenant, queued frames) for every open socket;
        ``tails`` (tenant, buffered bytes, peak buffered bytes) for every live tail."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        r.register(SocketGauges(sockets))
        r.register(TailGauges(tails or (lambda: ())))
        self.write_seconds = Histogram(
            "tidings_stream_socket_write_seconds",
            "Time to hand a frame to its socket: for frames written straight to a"
            " transport, one sample per dispatch slice (the mean per frame); for"
            " queued frames, one per batch a writer sends (waiting for the peer"
            " to drain included)",
            ["tenant"],
            buckets=_WRITE_BUCKETS,
            registry=r,
        )
        self.emit_to_socket = Histogram(
            "tidings_stream_emit_to_socket_seconds",
            "From a record's Kafka timestamp (when the emitter made it) to the live"
            " tail handing it to every socket of its run; one sample per record"
            " (hosts' clocks must agree)",
            ["tenant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivered = Counter(
            "tidings_stream_events_delivered", "Event frames written", ["tenant"], registry=r
        )
        self.slow_closes = Counter(
            "tidings_stream_slow_client_closes", "Sockets closed with 4408", ["tenant"], registry=r
        )
        self.closes = Counter(
            "tidings_stream_closes", "Sockets closed, by close code", ["code"], registry=r
        )
        self.consumer_lag = Gauge(
            "tidings_stream_consumer_lag",
            "Records between the live tail's position and the partition end",
            ["tenant", "partition"],
            registry=r,
        )
        self.run_lookups = Counter(
            "tidings_stream_run_lookups",
            "Stream opens by what answered their run lookup: cache (this gateway),"
            " index (Redis, docs/operations.md) or temporal",
            ["source"],
            registry=r,
        )
        self.resumes = Counter(
            "tidings_stream_resumes", "Sockets opened with a resume token", ["tenant"], registry=r
        )
        self.replayed = Counter(
            "tidings_stream_replayed_events",
            "Event frames queued from a catch-up read rather than the live tail",
            ["tenant"],
            registry=r,
        )
        self.paused_partitions = Gauge(
            "tidings_stream_paused_partitions",
            "Partitions the tenant's live tail has paused because its sockets' buffers are full",
            ["tenant"],
            registry=r,
        )
        self.pauses = Counter(
            "tidings_stream_tail_pauses",
            "Times the tenant's live tail paused its partitions (buffers past the high mark)",
            ["tenant"],
            registry=r,
        )
        self.quota_refusals = Counter(
            "tidings_stream_socket_quota_refusals",
            "Sockets refused with 1013 because the tenant had its maximum open on this gateway",
            ["tenant"],
            registry=r,
        )
        self.bad_records = Counter(
            "tidings_stream_bad_records",
            "Records skipped because they were not readable envelopes",
            ["tenant"],
            registry=r,
        )


class SocketGauges:
    """Open sockets and queued frames per tenant, computed at scrape time from
    the live subscribers, so the hot path pays nothing to keep them current."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        sockets: dict[str, int] = {}
        depth: dict[str, int] = {}
        for tenant, queued in self._source():
            sockets[tenant] = sockets.get(tenant, 0) + 1
            depth[tenant] = depth.get(tenant, 0) + queued
        open_ = GaugeMetricFamily(
            "tidings_stream_sockets", "Open stream sockets", labels=["tenant"]
        )
        queue = GaugeMetricFamily(
            "tidings_stream_send_queue_events",
            "Frames waiting in send queues, summed over sockets",
            labels=["tenant"],
        )
        for tenant, count in sockets.items():
            open_.add_metric([tenant], count)
            queue.add_metric([tenant], depth[tenant])
        yield open_
        yield queue


class TailGauges:
    """Bytes buffered for each tenant's sockets (and the most ever at once since
    its tail started), read from the tails at scrape time."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = GaugeMetricFamily(
            "tidings_stream_buffer_bytes",
            "Bytes queued for the tenant's sockets on this gateway (a frame counts once a socket)",
            labels=["tenant"],
        )
        peak = GaugeMetricFamily(
            "tidings_stream_buffer_peak_bytes",
            "The most bytes ever queued at once for the tenant's sockets since its tail started",
            labels=["tenant"],
        )
        for tenant, buffered, most in self._source():
            now.add_metric([tenant], buffered)
            peak.add_metric([tenant], most)
        yield now
        yield peak
