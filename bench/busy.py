"""A busy box: steady traffic through the stack's services while a workload runs.

Production boxes are never idle, so ``python -m bench --busy`` runs this load
generator beside every workload: it keeps Kafka, Redis and Temporal working
for their own sake, in one process of its own, at fixed rates:

- Kafka: ``--kafka-rate`` envelope-sized records/s (acks=all) to a topic of
  its own (``<prefix>.busy``, deleted at the end);
- Redis: ``--redis-rate`` session-like writes/s (HSET + EXPIRE, pipelined by
  ten) and as many reads;
- Temporal: ``--temporal-rate`` workflow starts/s on a task queue nobody polls,
  each described once, every run terminated at the end.

The same load runs for every system in the run (the floor too), so same-run
ratios stay fair; the figures are a busy box's, reported beside an idle run's.
Bounded by ``--seconds``; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from bench.harness import PYTHON, ROOT
from bench.systems.base import Endpoints

KAFKA_RATE = 1000.0
REDIS_RATE = 1000.0
TEMPORAL_RATE = 5.0
_LIMIT_S = 3600.0


@contextmanager
def busy(ends: Endpoints, say: Callable[[str], None]) -> Iterator[dict[str, float]]:
    """Run the load generator for the block; yields its rates."""
    argv = [PYTHON, "-m", "bench.busy", "--kafka", ends.kafka, "--redis", ends.redis]
    argv += ["--temporal", ends.temporal, "--seconds", str(_LIMIT_S)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" once every client is connected
    if not line.startswith("ready"):
        proc.kill()
        proc.wait(5)
        raise RuntimeError("the busy-box load generator did not start")
    rates = {"kafka_per_s": KAFKA_RATE, "redis_per_s": REDIS_RATE, "temporal_per_s": TEMPORAL_RATE}
    say(f"busy box: {json.dumps(rates)}")
    try:
        yield rates
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            done = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            done = proc.communicate(timeout=5)[0]
        say(f"busy box stopped: {done.strip().splitlines()[-1] if done.strip() else '?'}")


async def _paced(rate: float, stop: asyncio.Event, one: Callable[[], Awaitable[None]]) -> int:
    """Call ``one`` ``rate`` times a second until ``stop``; the count done."""
    done, began = 0, time.monotonic()
    while not stop.is_set():
        wait = began + done / rate - time.monotonic()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            continue
        await one()
        done += 1
    return done


async def main(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from bench.messages import TENANT
    from tidings.kafka_connection import client_options
    from tidings.runs import PIPELINE_WORKFLOW, run_id_for
    from tidings.settings import KafkaSettings, TemporalSettings
    from tidings.temporal_connect import connect_temporal

    prefix = "busy" + uuid.uuid4().hex[:8]
    topic = f"{prefix}.busy"
    options = client_options(KafkaSettings(bootstrap_servers=args.kafka))
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    producer = AIOKafkaProducer(**options, acks="all", linger_ms=1)
    await producer.start()
    redis = aioredis.from_url(args.redis)
    temporal = await connect_temporal(TemporalSettings(address=args.temporal))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(args.seconds, stop.set)
    payload = json.dumps({"pad": "x" * 200}).encode()
    started: list[str] = []
    counter = iter(range(1 << 62))

    async def record() -> None:
        await producer.send(topic, payload, key=str(next(counter) % 64).encode())

    async def sessions() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(10):
                key = f"{prefix}:s:{next(counter) % 5000}"
                pipe.hset(key, mapping={"run": "r", "next": "1"})
                pipe.expire(key, 60)
                pipe.hgetall(key)
            await pipe.execute()

    async def run() -> None:
        run_id = run_id_for(TENANT, None)
        handle = await temporal.start_workflow(
            PIPELINE_WORKFLOW,
            id=run_id,
            task_queue=f"{prefix}-idle",
            execution_timeout=timedelta(minutes=10),
        )
        started.append(run_id)
        await handle.describe()

    print("ready", flush=True)
    try:
        counts = await asyncio.gather(
            _paced(args.kafka_rate, stop, record),
            _paced(args.redis_rate / 10, stop, sessions),
            _paced(args.temporal_rate, stop, run),
        )
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        for run_id in started:
            with contextlib.suppress(Exception):
                await temporal.get_workflow_handle(run_id).terminate("busy box done")
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
        await admin.close()
        await redis.aclose()
    print(json.dumps({"kafka": counts[0], "redis": counts[1] * 10, "temporal": counts[2]}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.busy", description=__doc__)
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--temporal", required=True)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--kafka-rate", type=float, default=KAFKA_RATE)
    parser.add_argument("--redis-rate", type=float, default=REDIS_RATE)
    parser.add_argument("--temporal-rate", type=float, default=TEMPORAL_RATE)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
