"""Render docs/reliability.md's results tables from the suite's results file.

    .venv/bin/python -m tests.reliability.report            # rewrite the tables in place
    .venv/bin/python -m tests.reliability.report --check    # exit 1 if the doc is stale

The tables sit between ``<!-- results:begin -->`` and ``<!-- results:end -->``;
everything else in the document is prose kept by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "artifacts" / "reliability.json"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

FAULTS = [
    "worker SIGKILL",
    "gateway SIGKILL",
    "gateway rolling restart",
    "Kafka restart",
    "Redis restart",
    "Redis Sentinel failover",
    "Temporal restart",
    "duplicates + redelivery",
    "connection burst",
]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}" if value >= 10_000 else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "none"
    return str(value).replace("|", "\\|")


def fault_table(cases: dict[str, Any]) -> list[str]:
    lines = [
        "| case | injected | runs completed | clients | events checked (records) | lost "
        "| duplicated | retried attempts | left undiscarded | reconnects "
        "| longest stall after the fault (s) | outage (s) | case time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in FAULTS:
        c = cases.get(name)
        if c is None:
            lines.append(f"| {name} | (not run) |" + " |" * 11)
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _fmt(c["injected"]),
                    f"{c['runs_completed']}/{c['runs']}",
                    _fmt(c["clients"]),
                    f"{_fmt(c['events_expected'])} ({_fmt(c['records_in_topic'])})",
                    _fmt(c["events_lost"]),
                    _fmt(c["events_duplicated"]),
                    _fmt(c["retried_attempts"]),
                    _fmt(c.get("undiscarded_attempts", 0)),
                    _fmt(c["reconnects"]),
                    _fmt(c.get("recover_seconds")),
                    _fmt(c.get("outage_seconds")),
                    _fmt(c["duration_seconds"]),
                ]
            )
            + " |"
        )
    return lines


def burst_lines(cases: dict[str, Any]) -> list[str]:
    c = cases.get("connection burst")
    if c is None:
        return []
    rows = [("while 100 runs stream", c["burst"]), ("idle baseline", c.get("burst_idle_baseline"))]
    lines = [
        "",
        "Connection burst (thin raw-socket client in its own process; connect, wait for the "
        "token frame, drop without a close frame):",
        "",
        "| phase | sockets | elapsed (s) | per second | subscribe p50 (s) | p99 (s) | outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, b in rows:
        if b:
            lines.append(
                f"| {phase} | {_fmt(b['attempted'])} | {_fmt(b['elapsed_seconds'])} | "
                f"{_fmt(b['per_second'])} | {_fmt(b['p50_seconds'])} | {_fmt(b['p99_seconds'])} | "
                f"{_fmt(b['outcomes'])} |"
            )
    return lines


def abuse_table(cases: dict[str, Any]) -> list[str]:
    lines = ["", "| abuse case | injected | observed |", "|---|---|---|"]
    for name, c in sorted(cases.items()):
        if not (name.startswith("abuse") or name == "secrets"):
            continue
        observed = {k: v for k, v in c.items() if k not in ("case", "injected", "recorded_at")}
        lines.append(
            f"| {name.removeprefix('abuse: ')} | {_fmt(c['injected'])} | {_fmt(observed)} |"
        )
    return lines


def render(data: dict[str, Any]) -> str:
    cases: dict[str, Any] = data.get("cases", {})
    stamps = sorted(c["recorded_at"] for c in cases.values())
    head = [
        f"Recorded {stamps[0]} to {stamps[-1]} on {data.get('machine', {}).get('cpus', '?')} cores"
        if stamps
        else "No results yet.",
        "",
    ]
    return "\n".join([*head, *fault_table(cases), *burst_lines(cases), *abuse_table(cases)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    table = render(json.loads(args.results.read_text()))
    doc = args.doc.read_text()
    before, found, rest = doc.partition(BEGIN)
    _, found_end, after = rest.partition(END)
    if not (found and found_end):
        print(f"{args.doc}: missing {BEGIN} / {END}", file=sys.stderr)
        return 2
    updated = f"{before}{BEGIN}\n{table}\n{END}{after}"
    if args.check:
        return 0 if updated == doc else 1
    args.doc.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
