"""``tidings replay``: by run id against the real Temporal, and catching a
deliberately non-deterministic code change (``tests/cli/reordered.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.harness import CliWorld
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
REORDERED = "tests.cli.reordered:ReorderedPipeline"
FIRST_MISMATCH = (
    "Activity type of scheduled event 'tidings.emit_run_event' does not match "
    "activity type of activity command 'research.plan'"
)


async def test_replay_by_run_id(world: CliWorld) -> None:
    run_id = await world.start_run()
    await world.finished(run_id)

    clean = await world.tidings("replay", run_id)
    assert clean.code == 0, clean
    assert clean.lines() == [clean.out.strip()]
    assert clean.out.startswith(f"ok: {run_id} replays cleanly against the current code (")

    changed = await world.tidings("replay", run_id, "--workflow", REORDERED)
    assert changed.code == 1, changed
    (verdict,) = changed.lines()
    assert verdict.startswith(f"mismatch: {run_id}: [TMPRL1100] Nondeterminism error: ")
    assert FIRST_MISMATCH in verdict
    assert changed.err == ""  # the core's own warning is not repeated


async def test_replay_of_recorded_histories_catches_the_code_change(world: CliWorld) -> None:
    history = str(HISTORIES / "research-approval.json")
    clean = await world.tidings("replay", "--history-file", history)
    assert clean.code == 0, clean
    changed = await world.tidings("replay", "--history-file", history, "--workflow", REORDERED)
    assert changed.code == 1, changed
    assert FIRST_MISMATCH in changed.out


async def test_replay_failures(world: CliWorld, tmp_path: Path) -> None:
    unknown = await world.tidings("replay", f"{world.tenant}-{'0' * 32}")
    assert unknown.code == 2, unknown
    assert "unknown run" in unknown.err and len(unknown.err.strip().splitlines()) == 1

    world.extra_env["TIDINGS_TEMPORAL_ADDRESS"] = f"127.0.0.1:{free_port()}"
    try:
        down = await world.tidings("replay", f"{world.tenant}-x")
    finally:
        world.extra_env.pop("TIDINGS_TEMPORAL_ADDRESS")
    assert down.code == 3, down
    assert "cannot reach Temporal" in down.err

    junk = tmp_path / "junk.json"
    junk.write_text("{not json", encoding="utf-8")
    bad = await world.tidings("replay", "--history-file", str(junk))
    assert bad.code == 2, bad
    assert "not a Temporal history JSON" in bad.err

    both = await world.tidings("replay", "x", "--history-file", str(junk))
    assert both.code == 2 and "exactly one of" in both.err
