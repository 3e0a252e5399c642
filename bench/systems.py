"""The systems under test that clients reach over WebSocket, behind one interface.

Each system starts its server as a separate process (fresh for every
workload, so CPU and memory figures are its own), names its channels (a run
for Tidings), says how a client subscribes to one, and publishes through a
separate publisher process (bench.publish).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    ROOT,
    Server,
    free_port,
    pid_listening,
    raise_fd_limit,
    server,
)
from bench.messages import API_KEY, TENANT
from bench.wsclient import connect

N_RE = re.compile(rb'"n":(\d+)')
ALL_WORKLOADS = frozenset({"A", "B", "C", "D", "E1", "E2", "F", "G"})
CACHE = ROOT / "bench" / ".cache"


@dataclass(frozen=True)
class Endpoints:
    temporal: str
    kafka: str
    redis: str


def run_publisher(
    system: str,
    target: str,
    channels: list[str],
    count: int,
    rate: float,
    deadline: float,
    *extra: str,
) -> dict[str, Any]:
    """Run ``bench.publish`` for ``system`` in a process of its own; ``extra``
    are system-specific flags. The channels go through a file (argv is too
    small for 1,000)."""
    handle, path = tempfile.mkstemp(prefix="bench-channels-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump(channels, file)
    argv = [
        "--system", system, "--target", target, *extra, "--channels", path,
        "--count", str(count), "--rate", str(rate), "--deadline", str(deadline),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [PYTHON, "-m", "bench.publish", *argv],
            capture_output=True,
            text=True,
            timeout=deadline + 60,
            cwd=ROOT,
        )
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise RuntimeError(f"publisher failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def with_kafka_broker(pids: dict[str, int], endpoints: Endpoints) -> dict[str, int]:
    """``pids`` and, as "broker", the process serving the stack's Kafka port."""
    broker = pid_listening(int(endpoints.kafka.rsplit(":", 1)[1]))
    return pids if broker is None else {**pids, "broker": broker}


class System:
    name = ""
    title = ""
    api_key = ""
    ready_marker = ""
    empty_ping = False
    workloads = ALL_WORKLOADS
    # Sockets each load process opens at once (bursts use burst_concurrency).
    connect_concurrency = 200
    burst_concurrency = 250

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = 0
        self.server: Server | None = None

    @contextmanager
    def running(self) -> Iterator[Server]:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        """Processes whose CPU counts: ``server`` (the fan-out process) and,
        where there is one, ``broker``."""
        assert self.server is not None
        return {"server": self.server.pid}

    def channels(self, n: int) -> list[str]:
        return [f"bench-{i}" for i in range(n)]

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        raise NotImplementedError

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        raise NotImplementedError

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what outlives one workload (runs, topics)."""

    def load_options(self, burst: bool = False) -> dict[str, Any]:
        return {
            "connect_concurrency": self.burst_concurrency if burst else self.connect_concurrency,
            "port": self.port,
            "api_key": self.api_key,
            "ready_marker": self.ready_marker,
            "empty_ping": self.empty_ping,
        }


async def _collect(
    port: int,
    path: str,
    *,
    hello: str | None,
    ready_marker: bytes | None,
    until: bytes,
    expect: int,
    limit_s: float,
    api_key: str = "",
) -> tuple[list[bytes], float]:
    """Open one socket and gather its text payloads until ``until`` was seen
    (if given) and ``expect`` benchmark messages arrived, or the timeout;
    return them and the seconds from connecting to that moment."""
    payloads: list[bytes] = []
    numbered = 0
    seen = False
    done = asyncio.Event()
    finished_at = 0.0

    def keep(buf: bytes, start: int, end: int, _now: int) -> None:
        nonlocal numbered, seen, finished_at
        payload = buf[start:end]
        payloads.append(payload)
        numbered += payload.count(b'"t_ns"')
        if until and until in payload:
            seen = True
        if (seen or not until) and numbered >= expect and not done.is_set():
            finished_at = time.monotonic()
            done.set()

    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = await connect(
        "127.0.0.1",
        port,
        path,
        headers,
        keep,
        open_timeout=limit_s,
        hello=hello,
        ready_marker=ready_marker,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), max(0.01, started + limit_s - time.monotonic()))
    client.close()
    return payloads, (finished_at or time.monotonic()) - started


def count_numbers(payloads: list[bytes], events: int) -> dict[str, Any]:
    numbers = [int(m.group(1)) for p in payloads for m in N_RE.finditer(p)]
    unique = set(numbers)
    in_order = all(a < b for a, b in itertools.pairwise(numbers))
    return {
        "received": len(numbers),
        "missing": sum(1 for i in range(events) if i not in unique),
        "duplicated": len(numbers) - len(unique),
        "in_order": in_order,
    }


# --------------------------------------------------------------------------
# The floor
class Floor(System):
    name = "floor"
    title = "floor: uvicorn+Starlette broadcast"
    workloads = ALL_WORKLOADS - {"D"}

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.port = free_port()
        argv = [PYTHON, "-m", "bench.floor", "--port", str(self.port)]
        with server(argv, self.port, log=self.work / "floor.log") as srv:
            self.server = srv
            yield srv

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [("/ws", None)]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        import httpx

        mode = "all" if len(channels) == 1 else "each"
        total = count * len(channels)
        per_second = rate if rate else 0
        response = httpx.post(
            f"http://127.0.0.1:{self.port}/broadcast",
            params={"count": count, "rate": per_second, "mode": mode},
            timeout=deadline + 60,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        body["expected"] = total
        return body


# --------------------------------------------------------------------------
# The naive design: Redis pub/sub, one subscription per socket
class RedisPubSub(System):
    name = "redis-pubsub"
    title = "naive: Redis pub/sub + Starlette"
    ready_marker = '"ready"'
    workloads = ALL_WORKLOADS

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.redis_port = 0
        self._redis: subprocess.Popen[bytes] | None = None

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.redis_port = free_port()
        self.port = free_port()
        with ExitStack() as stack:
            redis_argv = [
                shutil.which("redis-server") or "redis-server",
                "--bind", "127.0.0.1", "--port", str(self.redis_port),
                "--save", "", "--appendonly", "no", "--maxclients", "60000",
                "--dir", str(self.work),
            ]  # fmt: skip
            self._redis_srv = stack.enter_context(
                server(redis_argv, self.redis_port, log=self.work / "redis.log")
            )
            env = {"BENCH_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0"}
            argv = [PYTHON, "-m", "bench.peers.redis_pubsub", "--port", str(self.port)]
            srv = stack.enter_context(
                server(argv, self.port, env, log=self.work / "redis_pubsub.log")
            )
            self.server = srv
            yield srv

    def pids(self) -> dict[str, int]:
        return {**super().pids(), "broker": self._redis_srv.pid}

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [(f"/ws/{ch}", None) for ch in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        target = f"redis://127.0.0.1:{self.redis_port}/0"
        return run_publisher("redis", target, channels, count, rate, deadline)

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Pub/sub has no resume: reconnect after the events and count what arrives."""
        channel = "bench-resume"

        async def go() -> dict[str, Any]:
            first = await connect("127.0.0.1", self.port, f"/ws/{channel}", ready_marker=b'"ready"')
            first.close()
            await asyncio.sleep(0.2)
            await asyncio.to_thread(self.publish, [channel], events, 0, timeout)
            payloads, _ = await _collect(
                self.port,
                f"/ws/{channel}",
                hello=None,
                ready_marker=b'"ready"',
                until=b"\x00never",
                expect=events,
                limit_s=min(timeout, 3.0),
            )
            counted = count_numbers(payloads, events)
            return {
                **counted,
                "seconds": None,
                "note": "no replay: pub/sub drops what a client missed",
            }

        return asyncio.run(go())


# --------------------------------------------------------------------------
# Tidings: Kafka -> gateway
class Tidings(System):
    name = "tidings"
    title = "Tidings (Kafka + gateway)"
    api_key = API_KEY
    ready_marker = "caught_up"
    workloads = ALL_WORKLOADS
    partitions = 6

    def __init__(self, work: Path, endpoints: Endpoints) -> None:
        super().__init__(work)
        self.endpoints = endpoints
        self.prefix = "bench" + uuid.uuid4().hex[:8]
        self.topic = f"{self.prefix}.events.{TENANT}"
        self.task_queue = f"{self.prefix}-idle"
        self._runs: list[str] = []
        self._topic_made = False
        self._owner = True

    def borrow(self, other: Tidings) -> None:
        """Use ``other``'s topic and runs (it creates and removes them)."""
        self.prefix, self.topic, self.task_queue = other.prefix, other.topic, other.task_queue
        self._runs = other._runs
        other._ensure_topic()
        self._topic_made = True
        self._owner = False

    # -- infrastructure shared by the workloads --------------------------------
    def _ensure_topic(self) -> None:
        if self._topic_made:
            return

        async def make() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=self.endpoints.kafka)
            await admin.start()
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            self.topic,
                            num_partitions=self.partitions,
                            replication_factor=1,
                            topic_configs={"retention.ms": str(3600 * 1000)},
                        )
                    ]
                )
            finally:
                await admin.close()

        asyncio.run(make())
        self._topic_made = True

    def _start_runs(self, n: int) -> list[str]:
        """Real runs in Temporal, owned by the tenant, that stay open: no worker
        polls their task queue, so they sit RUNNING until terminated."""
        from temporalio.client import Client
        from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

        from tidings.runs import PIPELINE_ATTRIBUTE, PIPELINE_WORKFLOW, TENANT_ATTRIBUTE, run_id_for

        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE), TENANT),
                SearchAttributePair(SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE), "bench"),
            ]
        )

        async def start() -> list[str]:
            client = await Client.connect(self.endpoints.temporal)
            ids = [run_id_for(TENANT, None) for _ in range(n)]
            semaphore = asyncio.Semaphore(32)

            async def one(run_id: str) -> None:
                async with semaphore:
                    await client.start_workflow(
                        PIPELINE_WORKFLOW,
                        id=run_id,
                        task_queue=self.task_queue,
                        search_attributes=attributes,
                        execution_timeout=timedelta(hours=2),
                    )

            await asyncio.gather(*(one(r) for r in ids))
            return ids

        return asyncio.run(start())

    def channels(self, n: int) -> list[str]:
        self._ensure_topic()
        if len(self._runs) < n:
            self._runs += self._start_runs(n - len(self._runs))
        return self._runs[:n]

    def close(self) -> None:
        if not self._owner:
            return

        async def cleanup() -> None:
            from temporalio.client import Client

            if self._runs:
                client = await Client.connect(self.endpoints.temporal)
                semaphore = asyncio.Semaphore(32)

                async def one(run_id: str) -> None:
                    async with semaphore:
                        with contextlib.suppress(Exception):
                            await client.get_workflow_handle(run_id).terminate("bench done")

                await asyncio.gather(*(one(r) for r in self._runs))
            if self._topic_made:
                from aiokafka.admin import AIOKafkaAdminClient

                admin = AIOKafkaAdminClient(bootstrap_servers=self.endpoints.kafka)
                await admin.start()
                try:
                    with contextlib.suppress(Exception):
                        await admin.delete_topics([self.topic])
                finally:
                    await admin.close()

        asyncio.run(cleanup())

    # -- the gateway -----------------------------------------------------------
    def gateway_env(self) -> dict[str, str]:
        return {
            "TIDINGS_TEMPORAL_ADDRESS": self.endpoints.temporal,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.endpoints.kafka,
            "TIDINGS_REDIS_URL": self.endpoints.redis,
            "TIDINGS_KAFKA_TOPIC_PREFIX": self.prefix,
            "TIDINGS_KAFKA_PARTITIONS": str(self.partitions),
            "TIDINGS_TENANTS_MAX_SOCKETS": "100000",
            "TIDINGS_LOG_LEVEL": "WARNING",
        }

    @contextmanager
    def running(self) -> Iterator[Server]:
        self._ensure_topic()
        self.port = free_port()
        argv = [str(Path(PYTHON).parent / "tidings"), "gateway", "--port", str(self.port)]
        with server(argv, self.port, self.gateway_env(), log=self.work / "gateway.log") as srv:
            self.server = srv
            yield srv

    def pids(self) -> dict[str, int]:
        return with_kafka_broker(super().pids(), self.endpoints)

    def stream_path(self, run_id: str, query: str = "from=now") -> str:
        return f"/v1/runs/{run_id}/stream?{query}"

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [(self.stream_path(run), None) for run in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        return run_publisher(
            "kafka", self.endpoints.kafka, channels, count, rate, deadline, "--topic", self.topic
        )

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Subscribe, keep the token, drop; ``events`` are emitted meanwhile;
        reconnect with ``resume=<token>`` and time until all have arrived."""
        run_id = self._start_runs(1)[0]
        self._runs.append(run_id)

        async def go() -> dict[str, Any]:
            first, _ = await _collect(
                self.port,
                self.stream_path(run_id),
                hello=None,
                ready_marker=b"caught_up",
                until=b"caught_up",
                expect=0,
                limit_s=30,
                api_key=self.api_key,
            )
            token = next(json.loads(p)["token"] for p in first if p.startswith(b'{"kind":"token"'))
            sent = await asyncio.to_thread(self.publish, [run_id], events, 0, timeout)
            payloads, seconds = await _collect(
                self.port,
                self.stream_path(run_id, f"resume={token}"),
                hello=None,
                ready_marker=None,
                until=b"caught_up",
                expect=events,
                limit_s=timeout,
                api_key=self.api_key,
            )
            return {**count_numbers(payloads, events), "seconds": seconds, "sent": sent["sent"]}

        return asyncio.run(go())


class TidingsAsgi(Tidings):
    """The same gateway with its direct sink off (TIDINGS_GATEWAY_DIRECT_FRAMES
    =false): every frame goes through the ASGI send and is framed per socket,
    as under any other server. The baseline for what the sink is worth."""

    name = "tidings-asgi"
    title = "Tidings, frames through ASGI"
    workloads = frozenset({"A", "B", "C", "E1", "E2", "F", "G"})

    def gateway_env(self) -> dict[str, str]:
        return {**super().gateway_env(), "TIDINGS_GATEWAY_DIRECT_FRAMES": "false"}


# --------------------------------------------------------------------------
# Kafka alone: produce -> consume, no gateway (the latency baseline)
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


# --------------------------------------------------------------------------
# Centrifugo v6, built from the Go module proxy
CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6@v6.9.1"


def centrifugo_binary(say: Any = print) -> str:
    """The centrifugo binary: $CENTRIFUGO_BIN, on PATH, or built once with
    ``go install`` into bench/.cache/bin (from the Go module proxy)."""
    given = os.environ.get("CENTRIFUGO_BIN")
    if given:
        return given
    built = CACHE / "bin" / "centrifugo"
    if built.exists():
        return str(built)
    found = shutil.which("centrifugo")
    if found:
        return found
    go = shutil.which("go") or "/usr/local/go/bin/go"
    say(f"building centrifugo ({CENTRIFUGO_MODULE}) with go install; takes a few minutes once")
    built.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", CENTRIFUGO_MODULE],
        env={**os.environ, "GOBIN": str(built.parent), "GOFLAGS": "-mod=mod"},
        check=True,
        timeout=1500,
    )
    return str(built)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_jwt(secret: str, claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


class Centrifugo(System):
    name = "centrifugo"
    title = "Centrifugo v6 (memory engine)"
    ready_marker = '"subscribe"'
    empty_ping = True
    workloads = ALL_WORKLOADS
    secret = "bench-hmac-secret-" + "x" * 16
    api_secret = "bench-api-key"

    def __init__(self, work: Path, binary: str) -> None:
        super().__init__(work)
        self.binary = binary
        self.token = hs256_jwt(self.secret, {"sub": "bench", "exp": int(time.time()) + 7200})

    def config(self) -> dict[str, Any]:
        # What bounds a recovery in Centrifugo v6 (centrifuge v0.38: client.go,
        # node.go, writer.go), each set so that D's 10,000 missed messages can
        # come back, as a user who needs that would configure it:
        # - channel history_size / history_ttl: the stream kept per channel;
        #   a gap older or longer than it cannot be recovered.
        # - client.recovery_max_publication_limit (default 300): recovery is
        #   all or nothing, so a gap longer than the limit gives
        #   ``recovered: false`` and no publications at all.
        # - client.queue_max_size (default 1 MiB): the recovered publications
        #   travel in the one subscribe reply (10,000 x ~300 B = ~3 MB here),
        #   and a client whose write queue holds more than this is closed
        #   with 3008 "slow" without flushing. Whether the writer had drained
        #   the reply first is a race: on an idle box it usually has, on a
        #   loaded one the socket closes and nothing arrives (the 10,000
        #   missing at full scale; 2,000 = ~0.6 MB fit). 16 MiB holds the
        #   reply with room; it only bounds memory for clients that lag.
        return {
            "log": {"level": "error"},
            "usage_stats": {"disabled": True},
            "http_server": {"address": "127.0.0.1", "port": self.port},
            "client": {
                "token": {"hmac_secret_key": self.secret},
                "allowed_origins": ["*"],
                "recovery_max_publication_limit": 100_000,
                "queue_max_size": 16 * 1024 * 1024,
            },
            "http_api": {"key": self.api_secret},
            "channel": {
                "without_namespace": {
                    "allow_subscribe_for_client": True,
                    "history_size": 20_000,
                    "history_ttl": "3600s",
                    "allow_recovery": True,
                    "force_recovery": True,
                }
            },
        }

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.port = free_port()
        path = self.work / "centrifugo.json"
        path.write_text(json.dumps(self.config(), indent=2))
        argv = [self.binary, "--config", str(path)]
        env = {"GOMAXPROCS": str(os.cpu_count() or 2)}
        with server(argv, self.port, env, log=self.work / "centrifugo.log") as srv:
            self.server = srv
            yield srv

    def hello(self, channel: str, recover: dict[str, Any] | None = None) -> str:
        subscribe: dict[str, Any] = {"channel": channel}
        if recover:
            subscribe.update(recover)
        return (
            json.dumps({"id": 1, "connect": {"token": self.token}}, separators=(",", ":"))
            + "\n"
            + json.dumps({"id": 2, "subscribe": subscribe}, separators=(",", ":"))
        )

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [("/connection/websocket", self.hello(ch)) for ch in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        target = f"http://127.0.0.1:{self.port}"
        return run_publisher(
            "centrifugo", target, channels, count, rate, deadline, "--api-key", self.api_secret
        )

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Subscribe (history on), note epoch+offset, drop; publish; reconnect
        with ``recover: true`` from that position."""
        channel = "bench-resume-" + uuid.uuid4().hex[:6]

        async def go() -> dict[str, Any]:
            first, _ = await _collect(
                self.port,
                "/connection/websocket",
                hello=self.hello(channel),
                ready_marker=b'"subscribe"',
                until=b'"subscribe"',
                expect=0,
                limit_s=30,
            )
            reply = next(
                json.loads(line) for p in first for line in p.split(b"\n") if b'"subscribe"' in line
            )["subscribe"]
            position = {
                "recover": True,
                "epoch": reply.get("epoch", ""),
                "offset": reply.get("offset", 0),
            }
            sent = await asyncio.to_thread(self.publish, [channel], events, 0, timeout)
            payloads, seconds, close_code = await self._recover(
                self.hello(channel, position), events, timeout
            )
            counted = count_numbers(payloads, events)
            out: dict[str, Any] = {
                **counted,
                "seconds": seconds,
                "sent": sent["sent"],
                "recovered_flag": any(b'"recovered":true' in p for p in payloads),
                "close_code": close_code,
            }
            if counted["missing"]:
                # Not a time to compare: say what stopped the recovery instead.
                out["seconds"] = None
                out["why"] = self._why_not(payloads, close_code, timeout)
            return out

        return asyncio.run(go())

    async def _recover(
        self, hello: str, expect: int, limit_s: float
    ) -> tuple[list[bytes], float, int | None]:
        """Like ``_collect``, but the wait also ends when the subscribe reply
        is in (recovered publications travel inside it, so nothing recovered
        comes later) or when the server closes the socket (a 3008 "slow" close
        would otherwise cost the whole timeout); the close code is returned."""
        payloads: list[bytes] = []
        numbered = 0
        done = asyncio.Event()
        finished_at = 0.0

        def keep(buf: bytes, start: int, end: int, _now: int) -> None:
            nonlocal numbered, finished_at
            payload = buf[start:end]
            payloads.append(payload)
            numbered += payload.count(b'"t_ns"')
            replied = payload.startswith(b'{"id":2') or b'\n{"id":2' in payload
            if (numbered >= expect or replied) and not done.is_set():
                finished_at = time.monotonic()
                done.set()

        started = time.monotonic()
        client = await connect(
            "127.0.0.1",
            self.port,
            "/connection/websocket",
            None,
            keep,
            open_timeout=limit_s,
            hello=hello,
            empty_ping=True,
        )
        arrived = asyncio.ensure_future(done.wait())
        ends: set[asyncio.Future[Any]] = {arrived, client.closed}
        await asyncio.wait(
            ends,
            timeout=max(0.01, started + limit_s - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        arrived.cancel()
        client.close()
        return payloads, (finished_at or time.monotonic()) - started, client.close_code

    @staticmethod
    def _why_not(payloads: list[bytes], close_code: int | None, timeout: float) -> str:
        reply = next(
            (line for p in payloads for line in p.split(b"\n") if line.startswith(b'{"id":2')),
            None,
        )
        if reply is None:
            if close_code == 3008:
                return (
                    "no subscribe reply: closed with 3008 slow, the recovery reply outgrew "
                    "client.queue_max_size"
                )
            if close_code is not None:
                return f"no subscribe reply: the server closed the socket with {close_code}"
            return f"no subscribe reply within {timeout:g} s"
        if reply.startswith(b'{"id":2,"error"'):
            return "subscribe failed: " + reply[:300].decode(errors="replace")
        if b'"recovered":true' not in reply:
            return (
                "recovered: false: the gap is not all in the channel history "
                "(history_size, history_ttl, recovery_max_publication_limit) or its epoch changed"
            )
        return f"recovered, but the socket ended early (close code {close_code})"


__all__ = [
    "Centrifugo",
    "Endpoints",
    "Floor",
    "KafkaAlone",
    "RedisPubSub",
    "System",
    "Tidings",
    "centrifugo_binary",
    "raise_fd_limit",
]
