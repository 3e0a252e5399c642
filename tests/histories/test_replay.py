"""Every recorded pipeline history replays against the current workflow code.

A failure here means a workflow change would break runs in flight: guard it
with ``workflow.patched(...)`` (then re-record with ``python -m tests.histories.record``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from cli.main import main as cli_main
from tests.orchestration.harness import fixture_registry
from workers.replay_command import replay

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
HISTORIES = sorted(HERE.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def test_every_pipeline_has_a_recorded_history() -> None:
    recorded = {path.stem.split(".")[0] for path in HISTORIES}
    missing = set(fixture_registry().names()) - recorded
    assert not missing, f"record histories for {sorted(missing)}: python -m tests.histories.record"


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
def test_history_replays(path: Path) -> None:
    verdict, ok = asyncio.run(replay(_load(path)))
    assert ok, verdict


def test_cli_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = HERE / "research.json"
    assert cli_main(["replay", "--history-file", str(good)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("ok: research replays cleanly")

    # Same history, but the code "now" schedules a different first activity.
    raw = json.loads(good.read_text(encoding="utf-8"))
    for event in raw["events"]:
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled and scheduled["activityType"]["name"] == "research.plan":
            scheduled["activityType"]["name"] = "research.plan.v0"
            break
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(raw), encoding="utf-8")
    assert cli_main(["replay", "--history-file", str(broken)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("mismatch: broken:")
    assert "research.plan" in out[0]
