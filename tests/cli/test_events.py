"""``tidings events``: paging through every stored event, ``--after``, ``--follow``."""

from __future__ import annotations

import pytest

from tests.cli.harness import CliWorld

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def offsets(items: list[dict[str, object]]) -> list[int]:
    return [int(str(item["cursor"]).split(":")[1]) for item in items]


async def test_events_pages_through_everything_and_resumes_after_a_cursor(
    world: CliWorld,
) -> None:
    run_id = await world.start_run()
    await world.finished(run_id)

    whole = await world.tidings("events", run_id, "--json")
    assert whole.code == 0, whole
    items = whole.json_lines()
    assert items[0]["event"]["type"] == "run.started"
    assert items[-1]["event"]["type"] == "run.completed"
    assert offsets(items) == sorted(set(offsets(items)))
    assert len(items) > 30  # many pages of 7 below

    paged = await world.tidings("events", run_id, "--json", "--page-size", "7")
    assert paged.code == 0, paged
    assert paged.json_lines() == items
    assert f"{len(items)} event(s); resume with --after " in paged.err

    after = await world.tidings("events", run_id, "--json", "--after", items[9]["cursor"])
    assert after.code == 0
    assert after.json_lines() == items[10:]

    # Text: one line per event, its cursor first.
    text = await world.tidings("events", run_id, "--limit", "3")
    assert text.code == 0
    lines = text.lines()
    assert len(lines) == 3
    assert lines[0].split()[0] == items[0]["cursor"] and "run.started" in lines[0]

    # --follow on a finished run: the rest of the log, then the end.
    follow = await world.tidings("events", run_id, "--json", "--follow", "--after",
                                 items[-4]["cursor"])  # fmt: skip
    assert follow.code == 0, follow
    assert [i["event"]["id"] for i in follow.json_lines()] == [i["event"]["id"] for i in items[-3:]]
    assert [i["cursor"] for i in follow.json_lines()] == [i["cursor"] for i in items[-3:]]
    assert "run completed" in follow.err
