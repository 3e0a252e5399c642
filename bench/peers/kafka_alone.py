"""Kafka alone: what produce -> consume costs on this machine, no gateway.

The baseline for the latency workloads (E1, E2): the records are the ones
Tidings' gateway tails (bench.publish ``--system kafka``: envelopes into the
bench topic, key = run id, ``"t_ns"`` stamped when handed to aiokafka), read
by one group-less ``AIOKafkaConsumer`` configured as the gateway's tail
(gateway/stream/tail.py: every partition assigned, positioned at the end,
``getmany(timeout_ms=500, max_records=2000)``, uvloop as under uvicorn), which
records receive time - ``t_ns`` for each record of the runs it follows.

Two kinds of process (bench.systems.KafkaAlone starts them):

``python -m bench.peers.kafka_alone serve --bootstrap B --topic T --port P``
    the consumer: the system's "server" (its CPU is measured), started fresh
    for each workload. It listens on 127.0.0.1:P once positioned at the end
    of every partition and answers one JSON line per command line:
    ``follow`` (the run ids to count), ``measure`` (as bench.loadgen's),
    ``close``.

``python -m bench.peers.kafka_alone --clients N --offset O --targets F ...``
    the client load, in place of bench.loadgen (bench.harness.load, with
    ``module`` from ``KafkaAlone.load_options``): it speaks loadgen's
    stdin/stdout protocol to the driver and relays it to the consumer, so
    bench.workloads runs E1/E2 unchanged. It only waits on a socket while
    the consumer measures.

One consumer follows every run of the workload, as the gateway's one tail
does: the load process holding target 0 asks it to follow all the targets'
runs (distinct), and any other load process reports no clients. So in E1
(1 subscriber on each of 1,000 runs) the consumer follows 1,000 runs; in E2
(1,000 subscribers on 1 run) it follows the one run once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
import time
from typing import Any

from bench.harness import run_fast

T_NS = re.compile(rb'"t_ns":(\d+)')
MAX_SAMPLES = 300_000
# The consumer exits after this long whatever happens (its loops are bounded).
LIFETIME_S = 3 * 3600


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# -- the consumer (the "server") ----------------------------------------------------------
class Tail:
    """Counts the records of the followed runs and samples their latency."""

    def __init__(self) -> None:
        self.follow: dict[bytes, int] = {}
        self.counts: list[int] = []
        self.base: list[int] = []
        self.expect = 1 << 62
        self.complete = 0
        self.all_in = asyncio.Event()
        self.samples: list[int] = []
        self.since_ns = 1 << 62  # no sampling until a measure command says from when
        self.last_ns = 0

    def set_follow(self, runs: list[str]) -> None:
        self.follow = {run.encode(): i for i, run in enumerate(runs)}
        self.counts = [0] * len(runs)
        self.base = [0] * len(runs)

    def take(self, records: list[Any], now_ns: int) -> None:
        follow, counts = self.follow, self.counts
        for record in records:
            index = follow.get(record.key)
            if index is None:
                continue
            counts[index] += 1
            self.last_ns = now_ns
            if counts[index] - self.base[index] == self.expect:
                self.complete += 1
                if self.complete == len(counts):
                    self.all_in.set()
            if len(self.samples) < MAX_SAMPLES:
                match = T_NS.search(record.value)
                if match is not None:
                    sent = int(match.group(1))
                    if sent >= self.since_ns:
                        self.samples.append(now_ns - sent)

    async def measure(self, expect: int, limit_s: float, since_ns: int) -> dict[str, Any]:
        self.samples = []
        self.since_ns = since_ns
        self.base = list(self.counts)
        self.complete = 0
        self.all_in.clear()
        self.expect = expect
        if expect <= 0 or not self.counts:
            self.all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), max(0.01, limit_s))
        got = [c - b for c, b in zip(self.counts, self.base, strict=True)]
        self.expect = 1 << 62
        self.since_ns = 1 << 62
        return {
            "phase": "done",
            "clients": len(got),
            "messages": sum(got),
            "complete": sum(1 for g in got if g >= expect),
            "last_ns": self.last_ns,
            "latencies_ns": self.samples,
            "closed": 0,
            "close_codes": [],
        }


async def serve(args: argparse.Namespace) -> None:
    from aiokafka import TopicPartition

    from gateway.kafka import KafkaFactory
    from tidings.kafka_log import committed_reader
    from tidings.settings import KafkaSettings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # As the gateway's tail (gateway/stream/tail.py, TenantTail.__init__/start).
    consumer = committed_reader(
        KafkaSettings(bootstrap_servers=args.bootstrap), auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        metadata = KafkaFactory(KafkaSettings(bootstrap_servers=args.bootstrap))
        try:
            partitions = await metadata.partitions(args.topic)
        finally:
            await metadata.close()
        if not partitions:
            raise RuntimeError(f"topic {args.topic} does not exist")
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions before saying ready (listening)
            await consumer.position(tp)
        tail = Tail()

        async def consume() -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                now_ns = time.monotonic_ns()
                for records in batches.values():
                    tail.take(records, now_ns)

        async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while not stop.is_set():
                    line = await reader.readline()
                    if not line:
                        break
                    command = json.loads(line)
                    if command["cmd"] == "follow":
                        tail.set_follow([str(r) for r in command["runs"]])
                        answer: dict[str, Any] = {"phase": "followed", "clients": len(tail.counts)}
                    elif command["cmd"] == "measure":
                        answer = await tail.measure(
                            int(command["expect"]),
                            float(command["timeout"]),
                            int(command.get("since_ns", 0)),
                        )
                    else:
                        tail.set_follow([])
                        answer = {"phase": "closed"}
                    writer.write(json.dumps(answer).encode() + b"\n")
                    await writer.drain()
            finally:
                writer.close()

        listener = await asyncio.start_server(control, "127.0.0.1", args.port)
        consuming = asyncio.create_task(consume())
        try:
            ended = asyncio.ensure_future(stop.wait())
            await asyncio.wait({ended, consuming}, timeout=LIFETIME_S)
            ended.cancel()
            if consuming.done():
                consuming.result()  # a consumer error ends the process with it
        finally:
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consuming
            listener.close()
    finally:
        await consumer.stop()


# -- the client load (in place of bench.loadgen) ---------------------------------------------
def relay(args: argparse.Namespace) -> None:
    with open(args.targets) as file:
        targets: list[list[str | None]] = json.load(file)
    start_ns = time.monotonic_ns()
    if args.offset != 0 or args.clients == 0:
        # The one consumer follows every run already (see the module doc).
        say(phase="ready", clients=0, failed=0, errors={}, start_ns=start_ns, ready_ns=start_ns)
        for line in sys.stdin:  # ends when the driver closes our stdin
            command = json.loads(line)
            if command["cmd"] == "measure":
                say(
                    phase="done", clients=0, messages=0, complete=0, last_ns=0,
                    latencies_ns=[], closed=0, close_codes=[],
                )  # fmt: skip
            else:
                say(phase="closed")
        return
    runs = list(dict.fromkeys(str(target[0]) for target in targets))
    with socket.create_connection(("127.0.0.1", args.port), timeout=args.open_timeout) as sock:
        stream = sock.makefile("rwb")

        def ask(command: dict[str, Any], timeout: float) -> dict[str, Any]:
            sock.settimeout(timeout)
            stream.write(json.dumps(command).encode() + b"\n")
            stream.flush()
            line = stream.readline()
            if not line:
                raise ConnectionError("the consumer closed the connection")
            answer: dict[str, Any] = json.loads(line)
            return answer

        followed = ask({"cmd": "follow", "runs": runs}, args.open_timeout)
        say(
            phase="ready",
            clients=followed["clients"],
            failed=0,
            errors={},
            start_ns=start_ns,
            ready_ns=time.monotonic_ns(),
        )
        for line in sys.stdin:  # ends when the driver closes our stdin
            command = json.loads(line)
            wait = float(command.get("timeout", 30)) + 30
            say(**ask(command, wait))


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        parser = argparse.ArgumentParser(prog="python -m bench.peers.kafka_alone serve")
        parser.add_argument("--bootstrap", required=True)
        parser.add_argument("--topic", required=True)
        parser.add_argument("--port", type=int, required=True)
        args = parser.parse_args(sys.argv[2:])
        run_fast(serve(args))
        return
    # bench.loadgen's command line (bench.harness.load), less what has no meaning here.
    parser = argparse.ArgumentParser(prog="python -m bench.peers.kafka_alone")
    parser.add_argument("--port", type=int, required=True, help="the consumer's control port")
    parser.add_argument("--targets", required=True, help="a JSON file [[run id, null], ...]")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--latency", action="store_true", help="always on")
    parser.add_argument("--open-timeout", type=float, default=60.0)
    relay(parser.parse_args())


if __name__ == "__main__":
    main()
