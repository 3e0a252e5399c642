"""Kafka alone: produce to consume, no gateway (the latency baseline)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    Server,
    server,
)
from bench.messages import TENANT
from bench.systems.base import (
    Endpoints,
    System,
    with_kafka_broker,
)
from bench.systems.tidings import Tidings
from infra.ports import free_port


class KafkaAlone(System):
    """What Kafka itself costs on this machine for E1/E2, measured in the same
    run as the gateway: Tidings' own publisher path (``Tidings.publish``:
    bench.publish, envelopes into the bench topic, key = run id) and one
    group-less aiokafka consumer of every partition, set up as the gateway's
    tail, in its own process (the "server", bench/peers/kafka_alone.py),
    recording receive time - ``t_ns`` per record. The client load processes
    only relay bench.loadgen's protocol to it, so bench.workloads runs E1/E2
    as for any system. Its CPU rows: ``server`` is the consumer, ``broker``
    Kafka (per delivery, and a record is one delivery here).

    E2 has one consumer (``connected`` 1, ``expected`` = the events sent), not
    1,000: Kafka has no per-subscriber fan-out (a subscriber of the gateway is
    a socket fed by its one tail), and 1,000 group-less consumers of one
    partition would measure 1,000 fetch sessions on one broker, something
    else."""

    name = "kafka"
    title = "Kafka alone"
    workloads = frozenset({"E1", "E2"})

    def __init__(self, work: Path, endpoints: Endpoints, topic_of: Tidings | None = None) -> None:
        super().__init__(work)
        self.endpoints = endpoints
        # The topic and the publisher are Tidings': the Tidings system's of
        # this run when there is one (it creates and deletes the topic), else a
        # private Tidings whose gateway never starts.
        self.kafka = topic_of if topic_of is not None else Tidings(work, endpoints)
        self._owner = topic_of is None
        self._runs: list[str] = []

    def channels(self, n: int) -> list[str]:
        """Run ids as Tidings names them (same keys, same envelope length),
        without workflows: nothing on this path asks Temporal."""
        from tidings.runs import run_id_for

        while len(self._runs) < n:
            self._runs.append(run_id_for(TENANT, None))
        return self._runs[:n]

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.kafka._ensure_topic()
        self.port = free_port()
        argv = [
            PYTHON, "-m", "bench.peers.kafka_alone", "serve",
            "--bootstrap", self.endpoints.kafka, "--topic", self.kafka.topic,
            "--port", str(self.port),
        ]  # fmt: skip
        with server(argv, self.port, log=self.work / "kafka_alone.log") as srv:
            self.server = srv
            yield srv

    def pids(self) -> dict[str, int]:
        return with_kafka_broker(super().pids(), self.endpoints)

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [(run, None) for run in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        return self.kafka.publish(channels, count, rate, deadline)

    def load_options(self, burst: bool = False) -> dict[str, Any]:
        return {"module": "bench.peers.kafka_alone", "port": self.port}

    def close(self) -> None:
        if self._owner:
            self.kafka.close()
