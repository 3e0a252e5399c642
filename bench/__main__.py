"""``python -m bench``: every system, every workload, in one run; prints the
figures side by side and writes bench/results/<timestamp>.json and .png.

Tidings needs Temporal, Kafka and Redis: name running ones with
TIDINGS_BENCH_TEMPORAL_ADDRESS, TIDINGS_BENCH_KAFKA_BOOTSTRAP and
TIDINGS_BENCH_REDIS_URL, or the benchmark starts a private stack (as the
test session does) and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import profile, report
from bench.harness import ROOT, raise_fd_limit
from bench.orchestration import ORCHESTRATION
from bench.systems import (
    Centrifugo,
    Endpoints,
    Floor,
    KafkaAlone,
    RedisPubSub,
    System,
    Tidings,
    TidingsAsgi,
    TidingsProcesses,
    centrifugo_binary,
)
from bench.workloads import FULL, QUICK, WORKLOADS, Scale

SYSTEMS = report.ORDER  # every system, in the report's order


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def endpoints(work: Path) -> Iterator[Endpoints]:
    names = (
        "TIDINGS_BENCH_TEMPORAL_ADDRESS",
        "TIDINGS_BENCH_KAFKA_BOOTSTRAP",
        "TIDINGS_BENCH_REDIS_URL",
    )
    if all(os.environ.get(n) for n in names):
        temporal, kafka, redis = (os.environ[n] for n in names)
        say(f"using the running stack: temporal {temporal}, kafka {kafka}, redis {redis}")
        yield Endpoints(temporal, kafka, redis)
        return
    from infra.settings import private_stack_settings
    from infra.stack import Stack

    say("starting a private stack (Temporal, Kafka, Redis) ...")
    stack = Stack(private_stack_settings(work / "stack"), apps=False, attached=True)
    stack.up(say)
    try:
        yield Endpoints(stack.temporal.address, stack.kafka.bootstrap, stack.redis.redis_url)
    finally:
        stack.down(say)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small version (smoke test)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default=",".join([*WORKLOADS, *ORCHESTRATION]))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report", type=Path, help="only print the table of an earlier JSON")
    parser.add_argument(
        "--profile", type=Path, help="sample the servers under F and O3 (py-spy) into this folder"
    )
    parser.add_argument(
        "--busy",
        action="store_true",
        help="run every workload beside steady Kafka, Redis and Temporal traffic (bench/busy.py)",
    )
    parser.add_argument(
        "--cold-runs",
        action="store_true",
        help="leave the bench's runs out of the gateways' run index (runs started outside"
        " Tidings): every first open asks Temporal",
    )
    parser.add_argument("--o1-runs", help="O1's numbers of concurrent runs, e.g. 1000 or 1,100")
    args = parser.parse_args()
    if args.profile:
        profile.enable(args.profile)
    if args.report:
        document = json.loads(args.report.read_text())
        print(report.table(document))
        print(report.processes_table(document))
        report.chart(document, args.report.with_suffix(".png"))
        return 0
    raise_fd_limit()
    scale: Scale = QUICK if args.quick else FULL
    if args.o1_runs:
        scale = replace(scale, o1_runs=tuple(int(n) for n in args.o1_runs.split(",")))
    chosen = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    started = time.time()
    load_at_start = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidings-bench-")))
        ends = (
            stack.enter_context(endpoints(work))
            if any(n.startswith(("tidings", "temporal", "kafka")) for n in chosen)
            else None
        )
        busy_rates: dict[str, float] | None = None
        if args.busy:
            if ends is None:
                parser.error("--busy needs the stack: choose a system that uses it (tidings)")
            from bench.busy import busy

            busy_rates = stack.enter_context(busy(ends, say))
        systems: list[System] = []
        for name in chosen:
            if name == "tidings":
                assert ends is not None
                systems.append(Tidings(work, ends, cold_runs=args.cold_runs))
            elif name in ("tidings-asgi", "tidings-2p"):
                assert ends is not None
                variant = TidingsAsgi if name == "tidings-asgi" else TidingsProcesses
                fix = variant(work, ends)
                owner = next((s for s in systems if isinstance(s, Tidings)), None)
                if owner is not None:
                    fix.borrow(owner)
                systems.append(fix)
            elif name == "kafka":
                assert ends is not None
                owner = next((s for s in systems if isinstance(s, Tidings)), None)
                systems.append(KafkaAlone(work, ends, owner))
            elif name == "floor":
                systems.append(Floor(work))
            elif name == "redis-pubsub":
                systems.append(RedisPubSub(work))
            elif name == "centrifugo":
                systems.append(Centrifugo(work, centrifugo_binary(say)))
        for system in systems:
            stack.callback(system.close)
            results[system.name] = {}
            for key in workloads:
                if key not in system.workloads:
                    continue
                title, run = WORKLOADS[key]
                say(f"{system.name} {key}: {title}")
                results[system.name][key] = _guarded(run, system, scale)
                say(f"  -> {json.dumps(_brief(results[system.name][key]))}")
        if "temporal-streams" in chosen:
            from bench.peers import temporal_streams

            assert ends is not None
            results["temporal-streams"] = temporal_streams.run_all(
                ends, work, scale, workloads, say
            )
        if "tidings" in chosen and any(w in ORCHESTRATION for w in workloads):
            from bench import orchestration

            assert ends is not None
            # O1's peer is Temporal streams, O2's a bare producer ("kafka"), O3's
            # the Temporal client: each only where that system was chosen.
            peers = {"temporal-streams", "kafka", "temporal-client"}
            everything = orchestration.run_all(
                ends, work, scale, workloads, say, o1_peer="temporal-streams" in chosen
            )
            for name, figures in everything.items():
                if name == "tidings" or name in peers & {*chosen, "temporal-client"}:
                    results.setdefault(name, {}).update(figures)
    binary = next((s.binary for s in systems if isinstance(s, Centrifugo)), None)
    document = report.document(results, scale, args.quick, started, binary)
    document["machine"]["loadavg_at_start"] = load_at_start
    if busy_rates is not None:
        document["busy_box"] = busy_rates
    if args.cold_runs:
        document["cold_runs"] = True
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    path = args.out / f"{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(document, indent=2))
    print(report.table(document))
    print(report.processes_table(document))
    print(f"\nmachine: {json.dumps(document['machine'])}")
    chart = report.chart(document, path.with_suffix(".png"))
    say(f"wrote {path}" + (f" and {chart}" if chart else ""))
    return 0


def _guarded(
    run: Callable[[System, Scale], dict[str, Any]], system: System, scale: Scale
) -> dict[str, Any]:
    for attempt in (1, 2):
        try:
            return run(system, scale)
        except Exception as exc:
            traceback.print_exc()
            error = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
            # A server that dies at start is retried once (others edit the tree).
            if attempt == 1 and "before listening" in str(exc):
                time.sleep(5)
                continue
            return error
    return error


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("errors", "cdf_ms")}


if __name__ == "__main__":
    sys.exit(main())
