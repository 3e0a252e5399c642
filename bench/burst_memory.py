"""Gateway memory across connection bursts: allocator high-water mark, or a leak?

    python -m bench.burst_memory [--bursts 3] [--sockets 10000] [--trace]

Starts one ``tidings gateway`` (its production assembly, plus a loopback
probe thread that reports RSS, the allocator's view, the collector's counts
and, with ``--trace``, tracemalloc diffs) against the stack named by
``TIDINGS_TEMPORAL_ADDRESS`` / ``TIDINGS_KAFKA_BOOTSTRAP_SERVERS`` /
``TIDINGS_REDIS_URL``, starts one run on a task queue no worker polls (so
the run stays open and its stream can be joined), then opens and drops
``--sockets`` stream sockets per burst (tests/reliability/burst_client.py,
its own process) and samples the gateway after each burst, then after a full
collection and after ``malloc_trim(0)``. Everything binds 127.0.0.1; every
loop is bounded. Prints one JSON line per sample.

``--serve PORT`` is the gateway side (internal).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from typing import Any

import httpx

from infra.ports import free_port

API_KEY = "dev-key-demo"


# --- the gateway side ---------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def rss_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pymalloc_stats() -> dict[str, Any]:
    """CPython's object allocator: arenas held from the OS vs. blocks in use
    (``sys._debugmallocstats`` writes to the C stderr; read it back)."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+b") as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("ascii", "replace")
    stats: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        value = value.strip().replace(",", "")
        if name.startswith("# arenas allocated current"):
            stats["arenas_current"] = int(value)
        elif name.startswith("# bytes in allocated blocks"):
            stats["blocks_in_use_mib"] = round(int(value) / 2**20, 1)
        elif name.startswith("# bytes in available blocks"):
            stats["blocks_free_mib"] = round(int(value) / 2**20, 1)
        elif name.startswith("# arenas highwater mark"):
            stats["arenas_highwater"] = int(value)
        elif name.startswith("Total") and "arenas_total_mib" not in stats:
            stats["arenas_total_mib"] = round(int(value) / 2**20, 1)
    return stats


class Probe:
    """Answers one JSON command per connection, from a thread beside the event loop."""

    def __init__(self, trace: bool) -> None:
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallinfo2.restype = _MallInfo2
        self._trace = trace
        self._snapshot: tracemalloc.Snapshot | None = None
        if trace:
            tracemalloc.start(8)

    def stats(self) -> dict[str, Any]:
        info = self._libc.mallinfo2()
        out: dict[str, Any] = {
            "rss_mib": rss_mib(),
            # Bytes malloc got from the OS (main arena + mmapped), in use, and free but kept.
            "malloc_arena_mib": round((info.arena + info.hblkhd) / 2**20, 1),
            "malloc_in_use_mib": round((info.uordblks + info.hblkhd) / 2**20, 1),
            "malloc_free_kept_mib": round(info.fordblks / 2**20, 1),
            "gc_counts": gc.get_count(),
            "gc_objects": len(gc.get_objects()),
            "gc_frozen": gc.get_freeze_count(),
        }
        if self._trace:
            out["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        return out

    def handle(self, command: str) -> dict[str, Any]:
        if command == "stats":
            return self.stats()
        if command == "collect":
            began = time.perf_counter()
            found = gc.collect()
            return {"collected": found, "seconds": round(time.perf_counter() - began, 3)}
        if command == "cycles":
            # What the uncollected garbage is made of: the types of every
            # object a full collection finds unreachable.
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                found = gc.collect()
                kinds = Counter(type(o).__qualname__ for o in gc.garbage)
                gc.garbage.clear()
            finally:
                gc.set_debug(0)
            return {"collected": found, "types": dict(kinds.most_common(15))}
        if command == "pymalloc":
            return pymalloc_stats()
        if command == "trim":
            began = time.perf_counter()
            released = self._libc.malloc_trim(0)
            return {"released": bool(released), "seconds": round(time.perf_counter() - began, 3)}
        if command == "diff" and self._trace:
            snapshot = tracemalloc.take_snapshot()
            top: list[str] = []
            if self._snapshot is not None:
                for stat in snapshot.compare_to(self._snapshot, "lineno")[:12]:
                    top.append(str(stat))
            self._snapshot = snapshot
            return {"top": top}
        return {"error": f"unknown command {command!r}"}

    def serve(self, port: int) -> None:
        listener = socket.create_server(("127.0.0.1", port))
        while True:
            conn, _ = listener.accept()
            with conn:
                command = conn.makefile().readline().strip()
                conn.sendall(json.dumps(self.handle(command)).encode() + b"\n")


def serve_gateway(probe_port: int, trace: bool) -> None:
    import uvicorn

    from gateway.server import redaction
    from gateway.server.command import server_config, tune_gc
    from tidings.observability import setup_logging
    from tidings.settings import Settings

    settings = Settings()
    setup_logging(settings)
    config = server_config(settings)
    redaction.install()
    tune_gc()
    probe = Probe(trace)
    threading.Thread(target=probe.serve, args=(probe_port,), daemon=True).start()
    uvicorn.Server(config).run()


# --- the driver side ----------------------------------------------------------------------------


def ask(port: int, command: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        conn.sendall(command.encode() + b"\n")
        answer: dict[str, Any] = json.loads(conn.makefile().readline())
        return answer


def wait_until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"not within {seconds:g}s: {what}")
        time.sleep(0.2)


def open_sockets(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tidings_stream_sockets{")
    )


def terminate(address: str, run_id: str) -> None:
    """No worker polls the run's queue, so a cancel would never be acted on."""
    import asyncio

    from temporalio.client import Client

    async def end() -> None:
        client = await Client.connect(address)
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(run_id).terminate("bench over")

    asyncio.run(end())


def ensure_topic(bootstrap: str, topic: str) -> None:
    """The run's topic: no worker emits here, so nothing else creates it."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from tidings.kafka_connection import client_options
    from tidings.settings import KafkaSettings

    async def create() -> None:
        admin = AIOKafkaAdminClient(**client_options(KafkaSettings(bootstrap_servers=bootstrap)))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        except Exception as exc:  # already there: fine
            if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                raise
        finally:
            await admin.close()

    asyncio.run(create())


def publisher(run_id: str, rate: float, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Streams ``rate`` events/s into the run while a burst joins it, as the
    issue's runs streamed drafts: each burst socket gets live frames."""
    from tidings.topics import events_topic

    channels = f"/tmp/burst-memory-{run_id}.json"
    with open(channels, "w", encoding="utf-8") as file:
        json.dump([run_id], file)
    topic = events_topic(env["TIDINGS_KAFKA_TOPIC_PREFIX"], "demo")
    command = [
        *(sys.executable, "-m", "bench.publish", "--system", "kafka"),
        *(
            "--target",
            env.get("TIDINGS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "--topic",
            topic,
        ),
        *("--channels", channels, "--count", str(int(rate * 600)), "--rate", str(rate)),
        *("--deadline", "600"),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def burst(port: int, run_id: str, count: int) -> dict[str, Any]:
    config = {
        "gateways": [["127.0.0.1", port]],
        "runs": [run_id],
        "count": count,
        "concurrency": 48,
        "seconds": 300,
        "key": API_KEY,
        "timeout": 15,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.burst_client", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=330,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc diffs (slow)")
    parser.add_argument(
        "--stream-rate", type=float, default=0, help="events/s into the run during bursts"
    )
    parser.add_argument("--cycles", action="store_true", help="name the cyclic garbage's types")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway")
    args = parser.parse_args()
    if args.serve:
        serve_gateway(args.serve, args.trace)
        return
    if not 1 <= args.bursts <= 20 or not 1 <= args.sockets <= 100_000:
        raise SystemExit("--bursts 1-20, --sockets 1-100000")
    if not 0 <= args.stream_rate <= 5000:
        raise SystemExit("--stream-rate 0-5000")
    port, probe_port = free_port(), free_port()
    env = {
        **os.environ,
        "TIDINGS_GATEWAY_HOST": "127.0.0.1",
        "TIDINGS_GATEWAY_PORT": str(port),
        "TIDINGS_TEMPORAL_TASK_QUEUE": f"bench-mem-{uuid.uuid4().hex[:8]}",
        "TIDINGS_KAFKA_TOPIC_PREFIX": os.environ.get("TIDINGS_KAFKA_TOPIC_PREFIX", "bench-mem"),
        "TIDINGS_LOG_LEVEL": "WARNING",
        **dict(item.split("=", 1) for item in args.env),
    }
    if args.stream_rate:
        from tidings.topics import events_topic

        topic = events_topic(env["TIDINGS_KAFKA_TOPIC_PREFIX"], "demo")
        ensure_topic(env.get("TIDINGS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), topic)
    command = [sys.executable, "-m", "bench.burst_memory", "--serve", str(probe_port)]
    gateway = subprocess.Popen(command + (["--trace"] if args.trace else []), env=env)
    base = f"http://127.0.0.1:{port}"
    run_id = ""
    try:

        def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            return False

        wait_until(healthy, 60, "the gateway answers /healthz")
        started = httpx.post(
            f"{base}/v1/runs",
            json={"pipeline": "research", "input": {"question": "memory"}},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        started.raise_for_status()
        run_id = started.json()["run_id"]

        def sample(label: str, **extra: Any) -> None:
            row = {"sample": label, **ask(probe_port, "stats"), **extra}
            row["pymalloc"] = ask(probe_port, "pymalloc")
            print(json.dumps(row), flush=True)

        sample("baseline")
        if args.trace:
            ask(probe_port, "diff")
        for n in range(1, args.bursts + 1):
            feed = publisher(run_id, args.stream_rate, env) if args.stream_rate else None
            try:
                result = burst(port, run_id, args.sockets)
            finally:
                if feed is not None:
                    feed.terminate()
                    feed.wait(timeout=20)
            wait_until(lambda: open_sockets(base) == 0, 60, "the socket gauge falls to 0")
            if args.trace:
                # Python-level growth is what survives a full collection.
                ask(probe_port, "collect")
            sample(f"after burst {n}", burst=result["outcomes"], per_second=result["per_second"])
            if args.trace:
                print(json.dumps({"diff": ask(probe_port, "diff")["top"]}), flush=True)
        if args.cycles:
            print(json.dumps({"cycles": ask(probe_port, "cycles")}), flush=True)
        sample("after gc.collect()", **ask(probe_port, "collect"))
        sample("after malloc_trim(0)", **ask(probe_port, "trim"))
    finally:
        if run_id:
            terminate(env.get("TIDINGS_TEMPORAL_ADDRESS", "127.0.0.1:7233"), run_id)
        gateway.terminate()
        try:
            gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()


if __name__ == "__main__":
    main()
