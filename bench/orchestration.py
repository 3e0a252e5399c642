"""The orchestration plane's workloads: what the product does around the stream.

O1  activity emit -> client latency: a bench pipeline (bench/emit_steps.py)
    run by a real ``tidings worker`` on Temporal, its step emitting
    timestamped tokens at a set rate per run, read by WebSocket clients of a
    real gateway; p50/p99/p99.9 at several numbers of concurrent runs. The
    peer is Temporal Workflow Streams on the same job (bench.peers.temporal_streams).
O2  events per second per worker: the worker's emitter (idempotent producer,
    acks=all) against a bare aiokafka producer, one process each, one after
    the other, on the same box and broker; both send the same envelopes.
O3  runs started per second: ``POST /v1/runs`` on a gateway against the
    Temporal client calling ``start_workflow`` directly, same server, same
    workflow, same concurrency.

Run by bench/__main__.py (``--workloads O1,O2,O3``); ``python -m
bench.orchestration emit`` is O2's sending process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    PYTHON,
    ROOT,
    cpu_seconds,
    latency_summary,
    load,
    percentile,
    write_targets,
)
from bench.messages import API_KEY, TENANT
from bench.profile import sampled
from bench.systems.base import Endpoints
from bench.systems.tidings import Tidings
from bench.tally import summarise
from bench.workloads import Scale

ORCHESTRATION = {
    "O1": "activity emit -> client latency through a worker and Temporal",
    "O2": "events per second per worker: emitter vs bare aiokafka producer",
    "O3": "runs started per second: POST /v1/runs vs Temporal start_workflow",
}
START_CONCURRENCY = 32
Say = Callable[[str], None]


class Orchestrated(Tidings):
    """A gateway and a worker serving a private bench pipeline on a private
    task queue and topic prefix."""

    def __init__(self, work: Path, endpoints: Endpoints) -> None:
        super().__init__(work, endpoints)
        self.task_queue = self.prefix + "-o"
        self.pipeline = "bench-" + uuid.uuid4().hex[:8]
        self.worker: subprocess.Popen[bytes] | None = None

    def gateway_env(self) -> dict[str, str]:
        return {
            **super().gateway_env(),
            "TIDINGS_TEMPORAL_TASK_QUEUE": self.task_queue,
            # The tenant's admission limits would measure themselves, not the path.
            "TIDINGS_TENANTS_MAX_CONCURRENT_RUNS": "1000000",
            "TIDINGS_TENANTS_MAX_EVENTS_PER_SECOND": "1000000",
        }

    @contextmanager
    def worker_running(self, max_activities: int) -> Iterator[None]:
        specs = self.work / f"pipelines-{self.pipeline}"
        specs.mkdir(exist_ok=True)
        spec = {
            "name": self.pipeline,
            "input": {
                "count": {"type": "integer"},
                "rate": {"type": "number"},
                "start_ns": {"type": "integer"},
                "gate": {"type": "string", "required": False, "default": ""},
            },
            "steps": [
                {
                    "name": "emit",
                    "activity": "bench.emit",
                    "input": {
                        "count": "$input.count",
                        "rate": "$input.rate",
                        "start_ns": "$input.start_ns",
                        "gate": "$input.gate",
                    },
                    "start_to_close_seconds": 900,
                }
            ],
        }
        (specs / f"{self.pipeline}.json").write_text(json.dumps(spec))
        env = {
            **self.gateway_env(),
            "TIDINGS_WORKER_PIPELINES_DIR": str(specs),
            "TIDINGS_WORKER_MAX_CONCURRENT_ACTIVITIES": str(max_activities),
            "TIDINGS_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "200",
        }
        argv = [str(Path(PYTHON).parent / "tidings"), "worker"]
        argv += ["--activities", "bench.emit_steps:activities"]
        with (self.work / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                argv, env={**_environ(), **env}, stdout=log, stderr=log, cwd=ROOT
            )
        try:
            yield
        finally:
            self.worker.terminate()
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_pipeline(self, timeout: float) -> None:
        """Until the gateway lists the pipeline the worker announced."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {API_KEY}"}
        while time.monotonic() < deadline:
            assert self.worker is not None
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}")
            try:
                got = httpx.get(f"{self.url()}/v1/pipelines", headers=headers, timeout=5)
                names = {p.get("name") for p in got.json().get("pipelines", [])}
                if self.pipeline in names:
                    return
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"pipeline {self.pipeline} not listed after {timeout}s")

    async def post_runs(
        self, inputs: list[dict[str, Any]], latencies: list[float] | None = None
    ) -> tuple[list[str], float, dict[str, int]]:
        """``POST /v1/runs`` for each input, ``START_CONCURRENCY`` in flight:
        the run ids, the seconds it took and the refusals by status; each
        request's seconds are appended to ``latencies``."""
        headers = {"Authorization": f"Bearer {API_KEY}"}
        limits = httpx.Limits(max_connections=START_CONCURRENCY)
        ids: list[str] = []
        refused: dict[str, int] = {}
        semaphore = asyncio.Semaphore(START_CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=self.url(), headers=headers, limits=limits, timeout=60
        ) as http:

            async def one(body: dict[str, Any]) -> None:
                async with semaphore:
                    sent = time.monotonic()
                    answer = await http.post(
                        "/v1/runs", json={"pipeline": self.pipeline, "input": body}
                    )
                    if latencies is not None:
                        latencies.append(time.monotonic() - sent)
                if answer.status_code == 201:
                    ids.append(answer.json()["run_id"])
                else:
                    status = str(answer.status_code)
                    refused[status] = refused.get(status, 0) + 1

            started = time.monotonic()
            await asyncio.gather(*(one(body) for body in inputs))
            seconds = time.monotonic() - started
        self._runs += ids  # terminated by close() if still running
        return ids, seconds, refused


# From the gate's opening to the first token: the activities (polling the
# gate) and the worker's loop get there before it.
_O1_SETTLE_SECONDS = 1.0


def _open_gate(gate: Path, start_ns: int) -> None:
    """Write ``start_ns`` into ``gate`` whole (renamed into place), for the
    bench step's activities to read (bench/emit_steps.py)."""
    ajar = gate.with_suffix(".tmp")
    ajar.write_text(str(start_ns))
    ajar.rename(gate)


def _environ() -> dict[str, str]:
    return dict(os.environ)


# -- O1 -----------------------------------------------------------------------------
def o1_tidings(system: Orchestrated, scale: Scale, say: Say) -> dict[str, Any]:
    out: dict[str, Any] = {"rate_per_run": scale.o1_rate, "seconds": scale.o1_seconds}
    count = max(1, round(scale.o1_rate * scale.o1_seconds))
    most = max(scale.o1_runs)
    with system.running(), system.worker_running(most + 50):
        system.wait_pipeline(60)
        for runs in scale.o1_runs:
            log_from = _size(system.work / "worker.log")
            # The runs wait at a gate: the first token goes out once every run
            # is started and every socket open and caught up, however long that
            # took, so no socket replays what it should have streamed.
            gate = system.work / f"o1-gate-{runs}"
            body = {"count": count, "rate": scale.o1_rate, "start_ns": 0, "gate": str(gate)}
            posting = time.monotonic()
            ids, _, refused = asyncio.run(system.post_runs([body] * runs))
            posted = time.monotonic() - posting
            targets = write_targets([(system.stream_path(r, "from=start"), None) for r in ids])
            try:
                with load(
                    min(scale.load_processes, len(ids)),
                    len(ids),
                    targets=targets,
                    latency=True,
                    tally=True,
                    open_timeout=scale.timeout * 4,
                    **system.load_options(),
                ) as loads:
                    readies = [proc.ready(scale.timeout * 4) for proc in loads]
                    opened = time.monotonic() - posting - posted
                    start_ns = time.monotonic_ns() + int(_O1_SETTLE_SECONDS * 1e9)
                    _open_gate(gate, start_ns)
                    # Until every socket has closed (its run's ``end``), not a
                    # fixed window: a socket cut while still open cannot tell
                    # a late token from a lost one. The old window's end is
                    # noted (cut) to say how far behind sockets were there.
                    window = scale.o1_seconds + scale.timeout
                    wait = _O1_SETTLE_SECONDS + scale.o1_seconds + _O1_END_LIMIT * scale.timeout
                    since = start_ns + int(scale.e_warmup * 1e9)
                    for proc in loads:
                        proc.measure_start(
                            count,
                            wait,
                            since,
                            until="ended",
                            cut_ns=start_ns + int(window * 1e9),
                            start_ns=start_ns,
                            rate=scale.o1_rate,
                        )
                    results = [proc.measure_result(wait + 10) for proc in loads]
            finally:
                Path(targets).unlink()
            samples = [s / 1e6 for r in results for s in r["latencies_ns"]]
            late = max(r["ready_ns"] for r in readies) > start_ns
            sockets = [s for r in results for s in r["sockets"]]
            delivery = summarise(sockets, count, start_ns, start_ns + int(window * 1e9))
            out[f"runs_{runs}"] = {
                "runs": len(ids),
                "refused": refused,
                "connected": sum(r["clients"] for r in readies),
                "expected": len(ids) * count,
                # Tokens of each socket's latest attempt (the discard rule).
                "received": sum(s["kept"] for s in sockets),
                **delivery,
                "window_s": window,
                "sockets_late": late,
                "post_s": round(posted, 1),
                "open_s": round(opened, 1),
                "worker_log": _worker_faults(system.work / "worker.log", log_from),
                **latency_summary(samples),
            }
            say(f"  O1 tidings at {runs} runs: {json.dumps(_brief(out[f'runs_{runs}']))}")
    _headline(out, scale)
    return out


# How long O1 waits for the last socket to end, after the emission, in units
# of the scale's timeout: generous, since on a busy box the worker emits late.
_O1_END_LIMIT = 3


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# What the worker logs when an activity attempt fails (Temporal's SDK) or a
# workflow task goes wrong; counted per O1 level to tell retried token steps
# (their tokens re-emitted under the next attempt) from a quiet run.
_WORKER_FAULTS = {
    "activity_failed": ("Completing activity as failed", "Completing as failure"),
    "workflow_task_failed": ("Failed activation", "Failed completing", "not found"),
    "heartbeat_failed": ("failed recording heartbeat",),
    # The emitter's own: a record re-sent after the producer failed its batch,
    # or given up on (activities/emitter.py).
    "emit_retried": ("event plane unavailable",),
    "record_lost": (" lost: ",),
}


def _worker_faults(log: Path, offset: int) -> dict[str, Any]:
    """Counts of :data:`_WORKER_FAULTS` in the worker log from ``offset``, and
    the first few such lines (cut short) as evidence."""
    with log.open("rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace").splitlines()
    lowered = [line.lower() for line in lines]
    found: dict[str, Any] = {}
    examples: list[str] = []
    for name, patterns in _WORKER_FAULTS.items():
        hits = [i for i, line in enumerate(lowered) if any(p.lower() in line for p in patterns)]
        found[name] = len(hits)
        examples += [lines[i][:300] for i in hits[:2]]
    found["bench_emit_failed"] = sum(
        1
        for line in lowered
        if "bench.emit" in line
        and any(p.lower() in line for p in _WORKER_FAULTS["activity_failed"])
    )
    found["examples"] = examples
    return found


def o1_streams(ends: Endpoints, work: Path, scale: Scale, say: Say) -> dict[str, Any]:
    from bench.peers import temporal_streams

    peer = temporal_streams.Peer(ends.temporal, work)
    count = max(2, round(scale.o1_rate * scale.o1_seconds))
    out: dict[str, Any] = {"rate_per_run": scale.o1_rate, "seconds": scale.o1_seconds}
    peer.start_worker()
    try:
        for runs in scale.o1_runs:
            result = temporal_streams.deliver(
                peer,
                runs,
                1,
                count,
                scale.o1_rate * runs,
                scale.timeout,
                flush_each=True,
                warmup=scale.e_warmup,
            )
            out[f"runs_{runs}"] = {"runs": runs, **result}
            say(f"  O1 temporal-streams at {runs} runs: {json.dumps(_brief(result))}")
    finally:
        peer.stop_worker()
    _headline(out, scale)
    out["note"] = (
        "a Temporal client process publishes into each run's workflow stream at the same "
        "per-run rate, flushing every item; one subscriber per run long-polls it"
    )
    return out


def _headline(out: dict[str, Any], scale: Scale) -> None:
    """The largest level's figures at the top, for the table and the chart."""
    top = out.get(f"runs_{max(scale.o1_runs)}", {})
    for key in ("p50_ms", "p99_ms", "p999_ms", "cdf_ms", "samples"):
        if key in top:
            out[key] = top[key]


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("errors", "cdf_ms")}


# -- O2 -----------------------------------------------------------------------------
async def emit_main(mode: str, bootstrap: str, prefix: str, count: int) -> None:
    """Send ``count`` envelopes as fast as one process can, then flush; print
    events/s and this process's CPU-seconds."""
    from aiokafka import AIOKafkaProducer

    from activities.emitter import Emitter
    from tidings.events import Event, EventType
    from tidings.kafka_connection import client_options
    from tidings.settings import KafkaSettings
    from tidings.topics import events_topic

    runs = [f"{TENANT}-{uuid.uuid4().hex}" for _ in range(64)]

    def event(n: int) -> Event:
        data = {"t_ns": time.monotonic_ns(), "n": n}
        run_id = runs[n % len(runs)]
        return Event(
            type=EventType.STEP_TOKEN, tenant=TENANT, run_id=run_id, step="bench", attempt=1,
            seq=n, data=data,
        )  # fmt: skip

    topic = events_topic(prefix, TENANT)
    if mode == "emitter":
        emitter = Emitter(KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix))
        await emitter.start()
        try:
            await emitter.emit(event(0), wait=True)  # warm: connection, metadata
            cpu0, started = cpu_seconds_self(), time.monotonic()
            for n in range(count):
                await emitter.emit(event(n), wait=False)
            await emitter.flush()
            seconds, cpu = time.monotonic() - started, cpu_seconds_self() - cpu0
        finally:
            await emitter.stop()
    else:
        options = client_options(KafkaSettings(bootstrap_servers=bootstrap))
        producer = AIOKafkaProducer(**options, linger_ms=5)
        await producer.start()
        try:
            await producer.send_and_wait(topic, event(0).to_bytes(), key=b"warm")
            cpu0, started = cpu_seconds_self(), time.monotonic()
            for n in range(count):
                e = event(n)
                await producer.send(topic, e.to_bytes(), key=e.run_id.encode())
            await producer.flush()
            seconds, cpu = time.monotonic() - started, cpu_seconds_self() - cpu0
        finally:
            await producer.stop()
    print(json.dumps({"events": count, "seconds": seconds, "cpu_s": cpu}), flush=True)


def cpu_seconds_self() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def o2(system: Orchestrated, scale: Scale) -> dict[str, dict[str, Any]]:
    ends, prefix = system.endpoints, system.prefix
    system._ensure_topic()  # the same topic and partitions for both producers
    out: dict[str, dict[str, Any]] = {}
    for mode, name in (("bare", "kafka"), ("emitter", "tidings")):
        argv = [PYTHON, "-m", "bench.orchestration", "emit", "--mode", mode]
        argv += ["--bootstrap", ends.kafka, "--prefix", prefix, "--count", str(scale.o2_events)]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=scale.timeout * 4, cwd=ROOT
        )
        if done.returncode != 0:
            out[name] = {"error": done.stderr[-1500:]}
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        out[name] = {
            "producer": "Emitter (idempotent, acks=all)" if mode == "emitter" else
            "AIOKafkaProducer (defaults, linger_ms=5)",
            "events": figures["events"],
            "events_per_s": round(figures["events"] / max(figures["seconds"], 1e-9)),
            "events_per_cpu_s": round(figures["events"] / max(figures["cpu_s"], 1e-9)),
        }  # fmt: skip
    return out


# -- O3 -----------------------------------------------------------------------------
def o3(system: Orchestrated, scale: Scale) -> dict[str, dict[str, Any]]:
    """The same number of starts each way, in the order direct, REST, REST,
    direct, so neither side is always the one measured while the other's runs
    still execute; the runs emit nothing (count 0)."""
    body = {"count": 0, "rate": 1.0, "start_ns": 0, "gate": ""}
    half = max(1, scale.o3_runs // 2)
    rest = {"runs": 0, "seconds": 0.0, "cpu_s": 0.0}
    refusals: dict[str, int] = {}
    direct = {"runs": 0, "seconds": 0.0}
    waits: dict[str, list[float]] = {"rest": [], "direct": []}
    with system.running(), system.worker_running(200):
        system.wait_pipeline(60)
        asyncio.run(system.post_runs([body] * 8))  # warm: connections, the registry
        for side in ("direct", "rest", "rest", "direct"):
            if side == "rest":
                assert system.server is not None
                cpu0 = cpu_seconds(system.server.pid)
                with sampled(f"tidings-O3-{rest['runs']}", system.server.pid):
                    ids, seconds, refused = asyncio.run(
                        system.post_runs([body] * half, waits["rest"])
                    )
                rest["cpu_s"] += cpu_seconds(system.server.pid) - cpu0
                rest["runs"] += len(ids)
                rest["seconds"] += seconds
                for status, n in refused.items():
                    refusals[status] = refusals.get(status, 0) + n
            else:
                count, seconds = asyncio.run(_start_direct(system, body, half, waits["direct"]))
                direct["runs"] += count
                direct["seconds"] += seconds
    return {
        "tidings": {
            "runs": rest["runs"],
            "refused": refusals,
            "runs_per_s": round(rest["runs"] / max(rest["seconds"], 1e-9)),
            # What the gateway spends on a start, and how long a start takes
            # as its caller sees it (the HTTP hop included).
            "gateway_cpu_ms_per_start": round(rest["cpu_s"] / max(rest["runs"], 1) * 1000, 2),
            **_waits(waits["rest"]),
        },
        "temporal-client": {
            "runs": direct["runs"],
            "runs_per_s": round(direct["runs"] / max(direct["seconds"], 1e-9)),
            **_waits(waits["direct"]),
        },
    }


def _waits(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    return {f"start_ms_p{q}": round(percentile(seconds, q) * 1000, 1) for q in (50, 99)}


async def _start_direct(
    system: Orchestrated, body: dict[str, Any], n: int, latencies: list[float]
) -> tuple[int, float]:
    """``start_workflow`` as the gateway calls it (same workflow, input, queue,
    summary, details and search attributes), without the gateway. The queue is
    the pipeline's own, as the gateway's registry names it, where the worker
    runs the REST-started runs too (this used the deployment queue before)."""
    from temporalio.client import Client

    from tidings.runs import PipelineInput, run_id_for
    from workflows.registry import dedicated_queue
    from workflows.spec import PipelineSpec
    from workflows.start import run_details, run_summary, start_pipeline

    spec = PipelineSpec.model_validate(
        json.loads((system.work / f"pipelines-{system.pipeline}" / f"{system.pipeline}.json")
                   .read_text())
    )  # fmt: skip
    client = await Client.connect(system.endpoints.temporal)
    queue = dedicated_queue(system.task_queue, system.pipeline)
    summary, details = run_summary(spec, TENANT, body), run_details(spec, TENANT, body)
    semaphore = asyncio.Semaphore(START_CONCURRENCY)
    started_ids: list[str] = []

    async def one() -> None:
        run_id = run_id_for(TENANT, None)
        arg = PipelineInput(
            tenant=TENANT,
            pipeline=system.pipeline,
            input=body,
            run_id=run_id,
            spec=spec.model_dump(mode="json"),
        )
        async with semaphore:
            sent = time.monotonic()
            await start_pipeline(client, arg, queue, summary=summary, details=details)
            latencies.append(time.monotonic() - sent)
        started_ids.append(run_id)

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    seconds = time.monotonic() - began
    system._runs += started_ids
    return len(started_ids), seconds


# -- the driver ---------------------------------------------------------------------
def run_all(
    ends: Endpoints,
    work: Path,
    scale: Scale,
    workloads: list[str],
    say: Say,
    o1_peer: bool = True,
) -> dict[str, dict[str, Any]]:
    """``{system: {workload: result}}`` for the O workloads asked for;
    ``o1_peer``: run O1's peer (minutes at 1,000 runs) too."""
    results: dict[str, dict[str, Any]] = {}

    def put(system: str, key: str, value: dict[str, Any]) -> None:
        results.setdefault(system, {})[key] = value

    def guarded(run: Callable[[], Any]) -> Any:
        try:
            return run()
        except Exception as exc:
            import traceback

            traceback.print_exc()
            return {"error": f"{type(exc).__name__}: {exc}"[:1500]}

    system = Orchestrated(work, ends)
    try:
        if "O1" in workloads:
            say(f"tidings O1: {ORCHESTRATION['O1']}")
            put("tidings", "O1", guarded(lambda: o1_tidings(system, scale, say)))
            if o1_peer:
                say(f"temporal-streams O1: {ORCHESTRATION['O1']}")
                put("temporal-streams", "O1", guarded(lambda: o1_streams(ends, work, scale, say)))
        if "O2" in workloads:
            say(f"O2: {ORCHESTRATION['O2']}")
            got = guarded(lambda: o2(system, scale))
            for name, value in got.items() if "error" not in got else [("tidings", got)]:
                put(name, "O2", value)
                say(f"  -> {name}: {json.dumps(value)}")
        if "O3" in workloads:
            say(f"O3: {ORCHESTRATION['O3']}")
            got = guarded(lambda: o3(system, scale))
            for name, value in got.items() if "error" not in got else [("tidings", got)]:
                put(name, "O3", value)
                say(f"  -> {name}: {json.dumps(value)}")
    finally:
        system.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration")
    sub = parser.add_subparsers(dest="command", required=True)
    emit = sub.add_parser("emit", help="O2's sending process")
    emit.add_argument("--mode", choices=("emitter", "bare"), required=True)
    emit.add_argument("--bootstrap", required=True)
    emit.add_argument("--prefix", required=True)
    emit.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(emit_main(args.mode, args.bootstrap, args.prefix, args.count))


if __name__ == "__main__":
    main()
