"""The benchmark report's orchestration and multi-process parts: O1's figures
per number of runs, the gateway processes rows, the ratio targets and the
latency CDF chart (bench/report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.harness import CDF_PERCENTS, latency_summary
from bench.workloads import QUICK

pytestmark = pytest.mark.unit


def document(results: dict[str, Any]) -> dict[str, Any]:
    return {"results": results, "scale": QUICK.as_dict(), "quick": True, "started_utc": "t"}


def test_latency_summary_keeps_the_distribution_for_the_cdf() -> None:
    summary = latency_summary([float(ms) for ms in range(1, 1001)])
    assert len(summary["cdf_ms"]) == len(CDF_PERCENTS)
    assert summary["cdf_ms"] == sorted(summary["cdf_ms"])
    assert summary["cdf_ms"][0] == 1 and summary["cdf_ms"][-1] == 1000
    assert latency_summary([])["cdf_ms"] == []


def test_o1_rows_read_each_level_and_ratios_name_their_targets() -> None:
    o1 = {"runs_50": {"p50_ms": 10.0, "p99_ms": 20.0, "p999_ms": 30.0}}
    doc = document(
        {
            "tidings": {"O1": o1, "O2": {"events_per_s": 800}, "O3": {"runs_per_s": 45}},
            "temporal-streams": {"O1": {"runs_50": {"p99_ms": 400.0}}},
            "kafka": {"O2": {"events_per_s": 1000}},
            "temporal-client": {"O3": {"runs_per_s": 50}},
        }
    )
    lines = report.table(doc).splitlines()
    p99 = next(line for line in lines if line.startswith("| O1 emit -> client p99 ms (50 runs"))
    assert "| 20.0 |" in p99 and "| 400 |" in p99 and "0.05x" in p99
    o2 = next(line for line in lines if line.startswith("| O2 events/s"))
    assert ">= 0.8x Kafka alone" in o2 and "0.80x" in o2
    o3 = next(line for line in lines if line.startswith("| O3 runs started/s"))
    assert ">= 0.9x Temporal client" in o3 and "0.90x" in o3


def test_o1_delivery_rows_flag_a_socket_ended_short_of_its_tokens() -> None:
    level = {"received": 4_900, "complete_sockets": 49, "open_at_deadline": 0, "last_end_s": 3.2}
    clean = report.table(document({"tidings": {"O1": {"runs_50": {**level, "ended_early": 0}}}}))
    early = next(line for line in clean.splitlines() if "end early) (50 runs)" in line)
    assert "| 0 ok |" in early
    faulty = report.table(document({"tidings": {"O1": {"runs_50": {**level, "ended_early": 1}}}}))
    early = next(line for line in faulty.splitlines() if "end early) (50 runs)" in line)
    assert "| 1 **MISS** |" in early
    complete = next(line for line in clean.splitlines() if "sockets complete of 50" in line)
    assert "| 49 |" in complete


def test_gateway_processes_rows_divide_rates_not_latencies() -> None:
    doc = document(
        {
            "tidings": {"A": {"deliveries_per_s": 1000}, "E2": {"p99_ms": 10.0}},
            "tidings-2p": {"A": {"deliveries_per_s": 1800}, "E2": {"p99_ms": 8.0}},
            "centrifugo": {"A": {"deliveries_per_s": 900}},
        }
    )
    rows = {line.split(" | ")[0]: line for line in report.processes_table(doc).splitlines()}
    assert rows["| A deliveries/s"].split(" | ")[1:6] == ["1,000", "1,800", "900", "1.80x", "900"]
    assert rows["| E2 p99 ms"].split(" | ")[3] == ""  # no "per process" latency
    assert report.processes_table(document({"tidings": {}})) == ""


def test_cdf_chart_draws_a_panel_per_latency_workload(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    cdf = latency_summary([float(ms) for ms in range(1, 200)])
    doc = document({"tidings": {"E1": cdf, "O1": cdf}, "floor": {"E1": cdf}})
    written = report.cdf_chart(doc, tmp_path / "x-cdf.png")
    assert written is not None and written.stat().st_size > 10_000
