"""A publisher process: sends ``count`` messages to each channel, round-robin
over the channels, as fast as it can (``--rate 0``) or paced at ``--rate``
messages/s in total. Each message is stamped with CLOCK_MONOTONIC when it is
handed to the client library. Prints one JSON line: first/last send times.

Systems: ``kafka`` (Tidings: envelopes straight into the tenant topic, key =
run id), ``redis`` (PUBLISH), ``centrifugo`` (HTTP API, batch endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence

from bench.messages import fast_envelope, peer_message

BURST_BATCH = 2000


class Pacer:
    """Yields the indexes due now; bounded by count and a deadline."""

    def __init__(self, total: int, rate: float, deadline_s: float) -> None:
        self.total, self.rate = total, rate
        self.started = time.monotonic()
        self.deadline = self.started + deadline_s
        self.next = 0

    async def due(self) -> range:
        if self.next >= self.total or time.monotonic() > self.deadline:
            return range(0)
        if self.rate <= 0:
            batch = range(self.next, min(self.total, self.next + BURST_BATCH))
        else:
            wait = self.started + self.next / self.rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            upto = int((time.monotonic() - self.started) * self.rate) + 1
            batch = range(self.next, min(self.total, max(upto, self.next + 1)))
        self.next = batch.stop
        return batch


async def pump(
    channels: Sequence[str],
    count: int,
    rate: float,
    deadline_s: float,
    send: Callable[[list[tuple[str, int]]], Awaitable[None]],
) -> dict[str, int]:
    pacer = Pacer(count * len(channels), rate, deadline_s)
    first = last = 0
    sent = 0
    while batch := await pacer.due():
        items = [(channels[i % len(channels)], i // len(channels)) for i in batch]
        first = first or time.monotonic_ns()
        await send(items)
        sent += len(items)
        last = time.monotonic_ns()
    return {"t0_ns": first, "t1_ns": last, "sent": sent}


async def kafka(args: argparse.Namespace, channels: list[str]) -> dict[str, int]:
    """Paced: one record per send (linger 0, as an emitter streaming tokens).
    Burst: records packed into one batch per partition per step with
    aiokafka's batch API, so the publisher outruns the gateway under test."""
    from aiokafka import AIOKafkaProducer

    from tidings.events import utc_now_iso
    from tidings.kafka_connection import client_options
    from tidings.kafka_log import partition_for
    from tidings.settings import KafkaSettings

    producer = AIOKafkaProducer(
        **client_options(KafkaSettings(bootstrap_servers=args.target)),
        acks=1,
        linger_ms=0,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    partitions = sorted(await producer.partitions_for(args.topic))
    keys = {ch: ch.encode() for ch in channels}
    partition_of = {ch: partition_for(ch, partitions) for ch in channels}
    pending: list[asyncio.Future[object]] = []
    try:

        async def send(items: list[tuple[str, int]]) -> None:
            ts = utc_now_iso()
            if args.rate:
                for run_id, n in items:
                    value = fast_envelope(run_id, n, time.monotonic_ns(), ts)
                    pending.append(await producer.send(args.topic, value=value, key=keys[run_id]))
                return
            by_partition: dict[int, list[tuple[str, int]]] = {}
            for run_id, n in items:
                by_partition.setdefault(partition_of[run_id], []).append((run_id, n))
            for partition, records in by_partition.items():
                batch = producer.create_batch()
                for run_id, n in records:
                    value = fast_envelope(run_id, n, time.monotonic_ns(), ts)
                    if batch.append(key=keys[run_id], value=value, timestamp=None) is None:
                        pending.append(
                            await producer.send_batch(batch, args.topic, partition=partition)
                        )
                        batch = producer.create_batch()
                        batch.append(key=keys[run_id], value=value, timestamp=None)
                pending.append(await producer.send_batch(batch, args.topic, partition=partition))

        result = await pump(channels, args.count, args.rate, args.deadline, send)
        await producer.flush()
        await asyncio.gather(*pending)
        return result
    finally:
        await producer.stop()


async def redis(args: argparse.Namespace, channels: list[str]) -> dict[str, int]:
    from redis.asyncio import Redis

    client = Redis.from_url(args.target)
    try:

        async def send(items: list[tuple[str, int]]) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for channel, n in items:
                    pipe.publish(channel, peer_message(channel, n))
                await pipe.execute()

        return await pump(channels, args.count, args.rate, args.deadline, send)
    finally:
        await client.aclose()


async def centrifugo(args: argparse.Namespace, channels: list[str]) -> dict[str, int]:
    import httpx

    async with httpx.AsyncClient(
        base_url=args.target, headers={"X-API-Key": args.api_key}, timeout=30
    ) as http:

        async def send(items: list[tuple[str, int]]) -> None:
            # Raw JSON text: the message is spliced in, as Centrifugo keeps it.
            commands = ",".join(
                '{"publish":{"channel":"' + ch + '","data":' + peer_message(ch, n) + "}}"
                for ch, n in items
            )
            response = await http.post(
                "/api/batch",
                content='{"commands":[' + commands + "]}",
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()

        return await pump(channels, args.count, args.rate, args.deadline, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", choices=["kafka", "redis", "centrifugo"], required=True)
    parser.add_argument("--target", required=True, help="bootstrap servers / URL")
    parser.add_argument("--topic", default="")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--channels", required=True, help="a JSON file: list of channel ids")
    parser.add_argument("--count", type=int, required=True, help="messages per channel")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in total; 0 = burst")
    parser.add_argument("--deadline", type=float, default=120.0, help="stop sending after (s)")
    args = parser.parse_args()
    with open(args.channels) as file:
        channels = json.load(file)
    run = {"kafka": kafka, "redis": redis, "centrifugo": centrifugo}[args.system]
    print(json.dumps(asyncio.run(run(args, channels))), flush=True)


if __name__ == "__main__":
    main()
