"""Temporal's own workflow streaming (temporalio.contrib.workflow_streams).

A workflow hosts the stream; publishers signal batches into it; each
subscriber long-polls it with an Update (``WorkflowStreamClient.subscribe``,
default 100 ms poll cooldown). There is no WebSocket here: the subscribers
are Temporal clients, run in separate processes (``subscribe`` below), and
the "server" is the Temporal server plus the worker running the workflow.

Scale is reduced to what the design allows: every subscription is a
workflow Update, and a workflow accepts only a few in flight (10 by default
on the server), so 1 run x 1,000 subscribers is not a configuration it can
serve; we run 1 run x 10 subscribers and say so.

Run by bench/__main__.py; the subcommands ``worker`` and ``subscribe`` are
the processes it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import PYTHON, ROOT, cpu_seconds, latency_summary, pid_listening

TOPIC = "events"
# Items per publish signal in a burst. A flush sends everything buffered as
# one signal, and Temporal rejects a payload over 2 MB ("Blob data size
# exceeds limit"; it warns from 512 KB): 10,000 items were ~4 MB. An item is
# ~405 bytes on the wire here (base64 of its Payload), so 1,000 are ~400 KB.
PUBLISH_CHUNK = 1000


def payload(n: int) -> dict[str, Any]:
    from bench.messages import peer_message

    message: dict[str, Any] = json.loads(peer_message("temporal", n))
    return message


# -- processes ---------------------------------------------------------------------
async def worker_main(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench.peers.temporal_workflow import BenchStreamWorkflow

    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[BenchStreamWorkflow]):
        print(json.dumps({"phase": "ready"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def subscribe_main(
    address: str, workflows: list[str], per: int, expect: int, limit_s: float
) -> None:
    from temporalio.client import Client
    from temporalio.contrib.workflow_streams import WorkflowStreamClient

    # Resume is timed from here: what a client pays to come back (connect,
    # then read), not this process's interpreter start and imports.
    started_ns = time.monotonic_ns()
    client = await Client.connect(address)
    counts: list[int] = []
    last_ns = [0]
    latencies: list[int] = []
    numbers: list[list[int]] = []

    async def one(workflow_id: str, index: int) -> None:
        stream = WorkflowStreamClient.create(client, workflow_id)
        async for item in stream.subscribe(TOPIC, from_offset=0):
            now = time.monotonic_ns()
            data = item.data
            counts[index] += 1
            numbers[index].append(int(data["n"]))
            latencies.append(now - int(data["t_ns"]))
            last_ns[0] = max(last_ns[0], now)
            if counts[index] >= expect:
                return

    tasks = []
    for w in workflows:
        for _ in range(per):
            counts.append(0)
            numbers.append([])
            tasks.append(asyncio.create_task(one(w, len(counts) - 1)))
    print(
        json.dumps({"phase": "ready", "subscribers": len(tasks), "started_ns": started_ns}),
        flush=True,
    )
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = sorted({repr(t.exception())[:200] for t in done if t.exception() is not None})
    missing = sum(max(0, expect - len(set(ns))) for ns in numbers)
    duplicated = sum(len(ns) - len(set(ns)) for ns in numbers)
    print(
        json.dumps(
            {
                "phase": "done",
                "messages": sum(counts),
                "complete": sum(1 for c in counts if c >= expect),
                "last_ns": last_ns[0],
                "latencies_ns": latencies,
                "missing": missing,
                "duplicated": duplicated,
                "errors": errors,
            }
        ),
        flush=True,
    )


# -- the driver ------------------------------------------------------------------------
class Peer:
    def __init__(self, address: str, work: Path) -> None:
        self.address = address
        self.work = work
        self.task_queue = "bench-streams-" + uuid.uuid4().hex[:8]
        self.worker: subprocess.Popen[str] | None = None

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [PYTHON, "-m", "bench.peers.temporal_streams", "worker", "--address", self.address,
             "--task-queue", self.task_queue],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.worker.stdout is not None
        line = self.worker.stdout.readline()
        if not line:
            raise RuntimeError("temporal streams worker did not start")

    def stop_worker(self) -> None:
        if self.worker is not None:
            if self.worker.stdin is not None:
                self.worker.stdin.close()
            try:
                self.worker.wait(15)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)

    def pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        server = pid_listening(int(self.address.rsplit(":", 1)[1]))
        if server is not None:
            pids["server"] = server
        if self.worker is not None:
            pids["worker"] = self.worker.pid
        return pids

    async def start_runs(self, n: int) -> list[str]:
        from temporalio.client import Client

        client = await Client.connect(self.address)
        ids = [f"bench-stream-{uuid.uuid4().hex[:12]}" for _ in range(n)]
        for chunk in range(0, n, 50):
            await asyncio.gather(
                *(
                    client.start_workflow(
                        "BenchStreamWorkflow",
                        wid,
                        id=wid,
                        task_queue=self.task_queue,
                        execution_timeout=timedelta(hours=1),
                    )
                    for wid in ids[chunk : chunk + 50]
                )
            )
        return ids

    async def finish_runs(self, ids: list[str]) -> None:
        from temporalio.client import Client

        client = await Client.connect(self.address)
        for chunk in range(0, len(ids), 50):
            await asyncio.gather(
                *(client.get_workflow_handle(w).signal("finish") for w in ids[chunk : chunk + 50]),
                return_exceptions=True,
            )

    async def publish(
        self, ids: list[str], count: int, rate: float, flush_each: bool
    ) -> dict[str, int]:
        """``count`` items per workflow, round-robin; paced at ``rate`` items/s
        in total (each flushed at once: the low-latency setting) or a burst,
        flushed every ``PUBLISH_CHUNK`` items per workflow."""
        from temporalio.client import Client
        from temporalio.contrib.workflow_streams import WorkflowStreamClient

        client = await Client.connect(self.address)
        # No ``max_batch_size``: it only wakes the background flusher of
        # ``async with client``, which never runs while this loop does not
        # yield; bursts are cut into signals below instead.
        streams = {w: WorkflowStreamClient.create(client, w) for w in ids}
        topics = {w: s.topic(TOPIC) for w, s in streams.items()}
        total = count * len(ids)
        started = time.monotonic()
        first = 0
        flushes: list[asyncio.Task[None]] = []
        buffered = dict.fromkeys(ids, 0)
        for i in range(total):
            w = ids[i % len(ids)]
            if rate:
                wait = started + i / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            first = first or time.monotonic_ns()
            topics[w].publish(payload(i // len(ids)))
            if flush_each:
                flushes.append(asyncio.create_task(streams[w].flush()))
                continue
            buffered[w] += 1
            if buffered[w] >= PUBLISH_CHUNK:
                buffered[w] = 0
                await streams[w].flush()
        if not flush_each:
            await asyncio.gather(*(s.flush() for s in streams.values()))
        await asyncio.gather(*flushes)
        return {"t0_ns": first, "t1_ns": time.monotonic_ns(), "sent": total}

    def subscribers(
        self, ids: list[str], per: int, expect: int, timeout: float
    ) -> subprocess.Popen[str]:
        listing = self.work / f"streams-{uuid.uuid4().hex[:6]}.json"
        listing.write_text(json.dumps(ids))
        return subprocess.Popen(
            [PYTHON, "-m", "bench.peers.temporal_streams", "subscribe", "--address", self.address,
             "--workflows", str(listing), "--per", str(per), "--expect", str(expect),
             "--timeout", str(timeout)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip


def _read(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line:
                parsed: dict[str, Any] = json.loads(line)
                return parsed
            raise RuntimeError("subscriber process ended without answering")
    proc.kill()
    raise TimeoutError("subscriber process said nothing in time")


def deliver(
    peer: Peer,
    runs: int,
    per: int,
    count: int,
    rate: float,
    timeout: float,
    *,
    flush_each: bool,
    warmup: float = 0.0,
) -> dict[str, Any]:
    ids = asyncio.run(peer.start_runs(runs))
    try:
        subs = peer.subscribers(ids, per, count, timeout + (count * runs / rate if rate else 0))
        ready = _read(subs, 60)
        time.sleep(2.0)  # let every subscription's first poll land
        pids = peer.pids()
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        since = time.monotonic_ns() + int(warmup * 1e9)
        published = asyncio.run(peer.publish(ids, count, rate, flush_each))
        result = _read(subs, timeout + 60 + (count * runs / rate if rate else 0))
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        subs.wait(10)
    finally:
        asyncio.run(peer.finish_runs(ids))
    received = result["messages"]
    seconds = max(1e-9, (result["last_ns"] - published["t0_ns"]) / 1e9)
    out: dict[str, Any] = {
        "connected": ready["subscribers"],
        "expected": ready["subscribers"] * count,
        "received": received,
        "incomplete_sockets": ready["subscribers"] - result["complete"],
        "missing": result["missing"],
        "duplicated": result["duplicated"],
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(received / seconds),
        **{
            f"cpu_s_per_M_{k}": round((cpu1[k] - cpu0[k]) / received * 1e6, 2) if received else None
            for k in cpu0
        },
        **({"errors": result["errors"]} if result["errors"] else {}),
    }
    if rate:
        t0 = published["t0_ns"]
        samples = [s / 1e6 for s in result["latencies_ns"]]
        # Drop warm-up: the first items are sent before ``since``.
        cut = int(len(samples) * max(0.0, (since - t0) / max(1, published["t1_ns"] - t0)))
        out.update(latency_summary(samples[cut:] if cut < len(samples) else samples))
    return out


def resume(peer: Peer, events: int, timeout: float) -> dict[str, Any]:
    """Events land while the subscriber is away; it comes back from its
    offset (0 here: it had seen nothing) and reads them all."""
    ids = asyncio.run(peer.start_runs(1))
    try:
        asyncio.run(peer.publish(ids, events, 0, flush_each=False))
        subs = peer.subscribers(ids, 1, events, timeout)
        ready = _read(subs, 60)
        started = int(ready["started_ns"])
        result = _read(subs, timeout + 60)
        subs.wait(10)
    finally:
        asyncio.run(peer.finish_runs(ids))
    return {
        "events": events,
        "received": result["messages"],
        "missing": result["missing"],
        "duplicated": result["duplicated"],
        "seconds": round((result["last_ns"] - started) / 1e9, 3) if result["last_ns"] else None,
        "note": "from the subscriber's Client.connect to its last item (process start excluded)",
    }


def run_all(
    ends: Any, work: Path, scale: Any, workloads: list[str], say: Callable[[str], None]
) -> dict[str, Any]:
    quick = scale.a_subs < 1000
    peer = Peer(ends.temporal, work)
    e1_runs = 100 if not quick else 10
    results: dict[str, Any] = {}
    a_subs, b_runs, limit = (5, 10, scale.timeout) if quick else (10, 100, scale.timeout)
    plan: dict[str, Callable[[], dict[str, Any]]] = {
        "A": lambda: {
            "scale_note": f"1 run x {a_subs} subscribers (Update limit per workflow)",
            **deliver(peer, 1, a_subs, scale.a_messages, 0, limit, flush_each=False),
        },
        "B": lambda: {
            "scale_note": f"{b_runs} runs x 1 subscriber",
            **deliver(peer, b_runs, 1, 20, 0, limit, flush_each=False),
        },
        "D": lambda: resume(peer, scale.d_events, scale.timeout),
        "E1": lambda: {
            "scale_note": f"{e1_runs} runs x 1 sub at {e1_runs} ev/s, flushing every publish",
            **deliver(peer, e1_runs, 1, max(2, round(scale.e_seconds)), e1_runs,
                      scale.timeout, flush_each=True, warmup=scale.e_warmup),
        },
        "E2": lambda: {
            "scale_note": f"1 run x 10 subs at {scale.e2_rate:g} ev/s, flushing every publish",
            **deliver(peer, 1, 10, round(scale.e2_rate * scale.e_seconds), scale.e2_rate,
                      limit, flush_each=True, warmup=scale.e_warmup),
        },
    }  # fmt: skip
    peer.start_worker()
    try:
        for key, run in plan.items():
            if key not in workloads:
                continue
            say(f"temporal-streams {key}")
            try:
                results[key] = run()
            except Exception as exc:
                results[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            brief = {k: v for k, v in results[key].items() if k not in ("errors", "cdf_ms")}
            say(f"  -> {json.dumps(brief)}")
    finally:
        peer.stop_worker()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--address", required=True)
    w.add_argument("--task-queue", required=True)
    s = sub.add_parser("subscribe")
    s.add_argument("--address", required=True)
    s.add_argument("--workflows", required=True)
    s.add_argument("--per", type=int, default=1)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    if args.command == "worker":
        asyncio.run(worker_main(args.address, args.task_queue))
    else:
        workflows = json.loads(Path(args.workflows).read_text())
        asyncio.run(subscribe_main(args.address, workflows, args.per, args.expect, args.timeout))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
