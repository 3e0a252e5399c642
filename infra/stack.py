"""The local stack: which services, in which order, started and stopped as one.

``up`` is all or nothing: every check that can fail runs before the first process
starts, and if anything fails after that, what this call started is stopped
again. What an earlier ``up`` started and is still healthy is left alone.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from infra import ports
from infra.errors import StackError
from infra.health import Row, probe, wait_healthy
from infra.install import ensure_kafka_jars, kafka_lib
from infra.layout import Layout
from infra.process import (
    ProcessRecord,
    Spawned,
    is_ours,
    proc_start_time,
    spawn,
    terminate,
)
from infra.services.apps import Gateway, UserCode, Wiring, Worker
from infra.services.base import Service
from infra.services.kafka import Kafka, SecureListener, cluster_ports
from infra.services.redis import Redis
from infra.services.sentinel import MASTER_NAME, RedisSentinel, sentinel_topology, sentinels_setting
from infra.services.temporal import Temporal
from infra.settings import StackSettings

Say = Callable[[str], None]


class Stack:
    def __init__(
        self,
        settings: StackSettings,
        *,
        task_queue: str = "tidings",
        apps: bool = True,
        attached: bool = False,
        code: UserCode | None = None,
        kafka_secure: SecureListener | None = None,
    ) -> None:
        """``attached``: the processes die with this one (test stacks), instead of detaching.
        ``kafka_secure``: the (first) Kafka node also serves clients over SASL_SSL."""
        self.settings = settings
        self.attached = attached
        self.layout = layout = Layout(settings.state_dir)
        host = settings.host
        self.temporal = Temporal(layout, host, settings.temporal_port, settings.temporal_ui_port)
        self.kafkas = self._kafka_nodes(settings.kafka_brokers, kafka_secure)
        self.kafka = self.kafkas[0]
        self.redis = Redis(layout, host, settings.redis_port)
        self.redis_replica: Redis | None = None
        self.sentinels: list[RedisSentinel] = []
        if settings.redis_sentinel:
            self.redis_replica, self.sentinels = sentinel_topology(
                layout,
                host,
                self.redis,
                settings.redis_replica_port,
                settings.redis_sentinel_port,
            )
        self.wiring = Wiring(
            self.temporal.address,
            self.temporal.ui_url,
            self.kafka_bootstrap,
            self.redis.redis_url,
            task_queue,
            redis_sentinels=sentinels_setting(self.sentinels),
            redis_sentinel_master=MASTER_NAME if self.sentinels else "",
            kafka_replication=min(3, len(self.kafkas)),
        )
        self.infra: list[Service] = [self.temporal, *self.kafkas, self.redis]
        if self.redis_replica is not None:
            self.infra += [self.redis_replica, *self.sentinels]
        self.apps: list[Service] = []
        if apps:
            self.apps += [
                Worker(layout, host, i + 1, self.wiring, code) for i in range(settings.workers)
            ]
            first = settings.gateway_port
            self.apps += [
                Gateway(layout, host, first + i, self.wiring, settings.gateway_processes)
                for i in range(settings.gateways)
            ]
        # Children of this process: waited on directly, so none lingers as a zombie.
        self._children: dict[str, Spawned] = {}

    def _kafka_nodes(self, brokers: int, secure: SecureListener | None = None) -> list[Kafka]:
        s = self.settings
        nodes = cluster_ports(s.kafka_port, s.kafka_controller_port, brokers)
        # One node keeps the name and folder it always had; a cluster's are numbered.
        voters = {i + 1: c for i, (_, c) in enumerate(nodes)} if len(nodes) > 1 else None
        return [
            Kafka(
                self.layout,
                s.host,
                port,
                controller,
                s.kafka_heap,
                kafka_lib(s),
                node_id=i + 1,
                voters=voters,
                secure=secure if i == 0 else None,
            )
            for i, (port, controller) in enumerate(nodes)
        ]

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's plaintext listener, as clients are given them."""
        return ",".join(node.bootstrap for node in self.kafkas)

    def services(self) -> list[Service]:
        return [*self.infra, *self.apps]

    def _known(self) -> dict[str, Service]:
        """Configured services, plus apps an earlier ``up`` recorded (say with more gateways)."""
        known = {service.name: service for service in self.services()}
        host = self.settings.host
        recorded = self.layout.recorded_services()
        # A cluster an earlier `up --kafka-brokers N` started, seen by a
        # command not given N: its nodes, on the ports the same settings give.
        nodes = [int(n) for name in recorded if (n := name.removeprefix("kafka-")).isdigit()]
        if nodes and len(self.kafkas) == 1:
            known.pop(self.kafka.name, None)
            known.update({node.name: node for node in self._kafka_nodes(max(nodes))})
        for name in recorded:
            kind, _, number = name.partition("-")
            if name in known or not number.isdigit():
                continue
            if kind == "gateway":
                known[name] = Gateway(self.layout, host, int(number), self.wiring)
            elif kind == "worker":
                known[name] = Worker(self.layout, host, int(number), self.wiring)
        return known

    @property
    def gateways(self) -> list[Gateway]:
        return [service for service in self.apps if isinstance(service, Gateway)]

    def up(self, say: Say, *, only: Iterable[str] | None = None) -> None:
        wanted = set(only) if only is not None else None
        self.layout.claim()
        with self.layout.exclusive():
            services = [s for s in self.services() if wanted is None or s.name in wanted]
            to_start = [s for s in services if not self._running(s, say)]
            self._preflight(to_start, say)
            self._start(services, to_start)

    def _preflight(self, to_start: list[Service], say: Say) -> None:
        """Every check that can fail, before the first process starts."""
        if any(node in to_start for node in self.kafkas):
            lib = ensure_kafka_jars(self.settings, say)
            for node in self.kafkas:
                node.lib = lib
        for service in to_start:
            service.check()
        for service in to_start:
            for port in service.ports:
                if ports.in_use(self.settings.host, port.number):
                    raise StackError(
                        f"port {port.number} ({port.setting}) for {service.name} is already in "
                        f"use by another process; stop that process or set {port.setting}"
                    )

    def _start(self, services: list[Service], to_start: list[Service]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        started: list[Spawned] = []
        try:
            for group in (self.infra, self.apps):
                batch = [s for s in group if s in to_start]
                for service in batch:
                    service.prepare()
                for service in batch:
                    started.append(self._spawn(service))
                wait_healthy(
                    [s for s in group if s in services],
                    self._children,
                    self.layout,
                    deadline,
                    self.settings.start_timeout_seconds,
                )
        except BaseException:
            for child in reversed(started):
                self._stop_child(child)
            raise

    def down(self, say: Say, *, only: Iterable[str] | None = None) -> None:
        if not self.layout.root.exists():
            say(f"nothing to stop: {self.layout.root} does not exist")
            return
        if not self.layout.is_claimed():
            raise StackError(
                f"{self.layout.root} was not created by tidings; nothing there is ours to stop"
            )
        with self.layout.exclusive():
            self._down(say, only)

    def _down(self, say: Say, only: Iterable[str] | None) -> None:
        names = self.layout.recorded_services()
        if only is not None:
            names = [name for name in names if name in set(only)]
        # Each rank stops together: a cluster's Kafka nodes stopped one by one
        # would leave the last without a controller quorum, waiting out its
        # grace for a controlled shutdown that cannot happen.
        for _, rank in itertools.groupby(sorted(names, key=_stop_order), key=_stop_order):
            group = list(rank)
            if len(group) == 1 or not group[0].startswith("kafka"):
                for name in group:
                    self._stop_one(name, say)
                continue
            with ThreadPoolExecutor(len(group)) as pool:
                list(pool.map(lambda name: self._stop_one(name, say), group))
        if not names:
            say(f"nothing to stop in {self.layout.root}")

    def _stop_one(self, name: str, say: Say) -> None:
        pid_file = self.layout.pid_file(name)
        record = ProcessRecord.load(pid_file)
        child = self._children.pop(name, None)
        if child is not None:
            outcome = terminate(child.record, grace=self._grace(name), popen=child.popen)
            say(f"{name}: {outcome} (pid {child.record.pid})")
        elif record is None:
            say(f"{name}: unreadable PID file removed")
        elif is_ours(record):
            outcome = terminate(record, grace=self._grace(name), popen=None)
            say(f"{name}: {outcome} (pid {record.pid})")
        else:
            say(f"{name}: stale PID file removed ({_whose(record)}; not signalled)")
        pid_file.unlink(missing_ok=True)

    def restart(self, name: str, say: Say) -> None:
        """Stop one service and start it again on the same ports and data."""
        self.down(say, only=[name])
        self.up(say, only=[name])

    def status(self) -> list[Row]:
        known = self._known()
        names = list(known) + [n for n in self.layout.recorded_services() if n not in known]
        return [probe(name, known.get(name), self.layout) for name in names]

    def _running(self, service: Service, say: Say) -> bool:
        """True if an earlier ``up`` started it and it still runs; drops a stale PID file."""
        pid_file = self.layout.pid_file(service.name)
        record = ProcessRecord.load(pid_file)
        if record is None:
            pid_file.unlink(missing_ok=True)
            return False
        if is_ours(record):
            service.attach(record.pid, started_at=0.0)
            return True
        say(f"{service.name}: stale PID file ignored ({_whose(record)}; not signalled)")
        pid_file.unlink()
        return False

    def _spawn(self, service: Service) -> Spawned:
        child = spawn(
            service.name,
            service.command(),
            log=self.layout.log(service.name),
            pid_file=self.layout.pid_file(service.name),
            env=service.environment(),
            cwd=self.layout.root,
            die_with_parent=self.attached,
        )
        service.attach(child.record.pid, started_at=time.time())
        self._children[service.name] = child
        return child

    def _stop_child(self, child: Spawned) -> None:
        name = child.record.service
        terminate(child.record, grace=self._grace(name), popen=child.popen)
        self._children.pop(name, None)
        self.layout.pid_file(name).unlink(missing_ok=True)

    def _grace(self, name: str) -> float:
        service = self._known().get(name)
        if service is None and name.startswith("kafka"):
            return Kafka.stop_grace  # a node of a cluster this stack was not told about
        return service.stop_grace if service else 10.0


def _whose(record: ProcessRecord) -> str:
    if proc_start_time(record.pid) is None:
        return f"pid {record.pid} has exited"
    return f"pid {record.pid} now belongs to another process"


def _stop_order(name: str) -> int:
    """Apps first, while what they use is still up; then the infrastructure, last started first."""
    order = {"redis": 2, "kafka": 3, "temporal": 4}
    if name.startswith("redis-"):  # sentinels and the replica: before the primary they watch
        return 1
    return order.get(name.partition("-")[0], 0 if name.startswith("gateway") else 1)
