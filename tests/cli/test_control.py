"""``tidings approve|reject|cancel`` as a user runs them, against a real
gateway and worker: each acts on the run, and each refusal is one clear line."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.cli.harness import QUESTION, CliWorld
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def waiting_run(world: CliWorld) -> str:
    """A run of research with an approval step, once it waits there."""
    run_id = await world.start_run(QUESTION, require_approval=True)
    headers = {"Authorization": f"Bearer {world.key}"}
    async with httpx.AsyncClient(base_url=world.url, headers=headers) as http:

        async def waiting() -> bool:
            detail = (await http.get(f"/v1/runs/{run_id}")).json()
            return bool(detail.get("waiting_for"))

        await wait_for(waiting, 45, f"{run_id} to wait for approval", interval=0.1)
    return run_id


async def test_approve_reject_and_cancel_act_on_the_run(world: CliWorld) -> None:
    approved, rejected, cancelled = await asyncio.gather(*(waiting_run(world) for _ in range(3)))

    sent = await world.tidings("approve", approved, "--comment", "looks right")
    assert sent.code == 0, sent
    assert sent.out.strip() == f"approved: {approved} (step review)"
    finished = await world.finished(approved)
    assert finished["status"] == "COMPLETED", finished

    sent = await world.tidings("reject", rejected, "--json")
    assert sent.code == 0, sent
    assert json.loads(sent.out)["signal"] == "reject"
    finished = await world.finished(rejected)
    assert finished["status"] == "FAILED" and "rejected" in (finished["error"] or ""), finished

    sent = await world.tidings("cancel", cancelled)
    assert sent.code == 0, sent
    assert sent.out.startswith(f"cancel requested: {cancelled}")
    finished = await world.finished(cancelled)
    assert finished["status"] == "CANCELLED", finished

    # The reviewer's comment reached the run's events.
    events = await world.tidings("events", approved, "--json")
    review = [
        item["event"]
        for item in events.json_lines()
        if item["event"]["type"] == "step.completed" and item["event"]["step"] == "review"
    ]
    assert review and review[0]["data"]["output"]["comment"] == "looks right", review


async def test_refusals_are_one_line_and_exit_2(world: CliWorld) -> None:
    done = await world.start_run()
    await world.finished(done)
    unknown = f"{world.tenant}-{'0' * 32}"
    cases: list[tuple[tuple[str, ...], str]] = [
        (("approve", unknown), "not_found"),
        (("cancel", unknown), "not_found"),
        (("approve", done), "already finished (COMPLETED); nothing to approve"),
        (("reject", done), "already finished (COMPLETED); nothing to reject"),
        (("cancel", done), "already finished (COMPLETED); nothing to cancel"),
        (("approve", done, "--api-key", "not-the-key-123"), "unauthorized"),
    ]
    results = await asyncio.gather(*(world.tidings(*argv) for argv, _ in cases))
    for (argv, needle), result in zip(cases, results, strict=True):
        assert result.code == 2, (argv, result)
        err = result.err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
        assert err.startswith(f"tidings {argv[0]}: ")
        assert "not-the-key-123" not in err and result.out == ""


async def test_approve_refuses_a_run_that_is_not_waiting(world: CliWorld) -> None:
    run_id = await waiting_run(world)
    first = await world.tidings("approve", run_id)
    assert first.code == 0, first
    # The run has moved past its approval (running its last step, or done):
    # a second answer would be ignored by the workflow, so it is refused.
    again = await world.tidings("approve", run_id)
    assert again.code == 2, again
    err = again.err.strip()
    assert "is not waiting for approve or reject" in err or "already finished" in err, err
    assert (await world.finished(run_id))["status"] == "COMPLETED"
