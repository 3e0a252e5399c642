"""``tidings run --watch`` and ``tidings watch`` as a user runs them: child
processes against a real gateway process and a real worker process."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cli.watch import Printer, Watch
from tests.cli.harness import QUESTION, CliWorld, Result
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STEP_LINES = [
    "run started: research, 5 steps",
    "step plan started (attempt 1)",
    "step plan completed (attempt 1) [1/5]",
    "step search[0] started (attempt 1)",
    "step search completed [2/5]",
    "step draft started (attempt 1)",
    "step draft completed (attempt 1) [3/5]",
    "step review skipped [4/5]",
    "step final started (attempt 1)",
    "step final completed (attempt 1) [5/5]",
    "run completed [5/5 steps]",
]


def in_order(lines: list[str], expected: list[str]) -> bool:
    """``expected`` is a subsequence of ``lines``."""
    remaining = iter(lines)
    return all(any(line == want for line in remaining) for want in expected)


async def events_of(world: CliWorld, run_id: str) -> list[dict[str, Any]]:
    listed = await world.tidings("events", run_id, "--json")
    assert listed.code == 0, listed
    return listed.json_lines()


async def test_run_watch_shows_steps_progress_and_tokens(world: CliWorld) -> None:
    result = await world.tidings(
        "run", "research", "--input", json.dumps({"question": QUESTION}), "--watch"
    )
    assert result.code == 0, result
    lines = result.lines()
    assert lines[0].startswith(f"run      {world.tenant}-")
    run_id = lines[0].split()[1]
    answer = (await world.finished(run_id))["result"]["answer"]
    assert "\x1b" not in result.out  # not a terminal: plain lines, no bar, no colour
    assert in_order(lines, STEP_LINES), result.out
    assert lines[-1] == "run completed [5/5 steps]"
    # --watch follows from the first event: every token, once, inline.
    assert f"  draft | {answer}" in lines
    assert result.out.count(answer) == 1


async def test_watch_follows_a_run_to_completion(world: CliWorld) -> None:
    run_id = await world.start_run()
    result = await world.tidings("watch", run_id)
    assert result.code == 0, result
    assert in_order(result.lines(), STEP_LINES), result.out
    assert result.err == ""


async def test_watch_json_prints_one_envelope_per_line(world: CliWorld) -> None:
    run_id = await world.start_run()
    answer = (await world.finished(run_id))["result"]["answer"]
    result = await world.tidings("watch", run_id, "--json", "--from-start")
    assert result.code == 0, result
    envelopes = result.json_lines()
    assert all(e["run_id"] == run_id and e["schema"] == 1 for e in envelopes)
    assert len({e["id"] for e in envelopes}) == len(envelopes)
    assert envelopes[0]["type"] == "run.started" and envelopes[-1]["type"] == "run.completed"
    assert "".join(e["data"]["text"] for e in envelopes if e["type"] == "step.token") == answer
    # The same events `tidings events` lists, in the same order.
    assert [e["id"] for e in envelopes] == [
        i["event"]["id"] for i in await events_of(world, run_id)
    ]

    # Without --from-start the tokens of history are left out; every state event is there.
    states = await world.tidings("watch", run_id, "--json")
    assert states.code == 0
    assert [e["id"] for e in states.json_lines()] == [
        e["id"] for e in envelopes if e["type"] != "step.token"
    ]


async def test_watch_survives_a_gateway_kill_mid_stream(world: CliWorld) -> None:
    """kill -9 the gateway while the draft streams: the watch resumes with its
    token on the restarted gateway; the tokens it prints are exactly the result."""
    run_id = await world.start_run()
    watch = await world.spawn_cli("watch", run_id, "--from-start")
    assert watch.stdout is not None and watch.stderr is not None
    out = bytearray()

    async def read() -> None:
        assert watch.stdout is not None
        while chunk := await watch.stdout.read(4096):
            out.extend(chunk)

    reader = asyncio.create_task(read())
    try:
        marker = b"  draft | "
        await wait_for(
            lambda: marker in out and len(out) - out.index(marker) > len(marker) + 40,
            45,
            "the watch to print part of the draft",
        )
        at_kill = bytes(out)
        await world.restart_gateway()
        code = await asyncio.wait_for(watch.wait(), 60)
        await reader
        err = (await watch.stderr.read()).decode()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
        reader.cancel()
    text = out.decode()
    assert code == 0, (text, err)
    answer = (await world.finished(run_id))["result"]["answer"]
    lines = text.splitlines()
    assert f"  draft | {answer}" in lines, text
    assert text.count(answer) == 1
    assert in_order(lines, STEP_LINES), text
    # The kill came mid-stream: the watch had printed only part of the draft.
    streamed = at_kill.decode(errors="replace").split("  draft | ", 1)[1]
    assert len(streamed) < len(answer) and answer.startswith(streamed.rstrip("\n")), streamed
    assert "connection dropped; resumed" in err, err


async def test_watch_from_a_cursor(world: CliWorld) -> None:
    run_id = await world.start_run()
    answer = (await world.finished(run_id))["result"]["answer"]
    stored = await events_of(world, run_id)
    draft_started = next(
        i for i, item in enumerate(stored)
        if item["event"]["type"] == "step.started" and item["event"]["step"] == "draft"
    )  # fmt: skip
    cursor = stored[draft_started]["cursor"]

    # --json: exactly the events after the cursor, tokens included.
    after = await world.tidings("watch", run_id, "--from", cursor, "--json")
    assert after.code == 0, after
    assert [e["id"] for e in after.json_lines()] == [
        item["event"]["id"] for item in stored[draft_started + 1 :]
    ]

    # Text: the draft's tokens and the progress, the total from the run's first event.
    text = await world.tidings("watch", run_id, "--from", stored[draft_started - 1]["cursor"])
    assert text.code == 0, text
    lines = text.lines()
    assert f"  draft | {answer}" in lines
    assert "skipped" not in " ".join(lines[:3])  # earlier steps were done, not skipped
    assert in_order(lines, STEP_LINES[5:]), text.out

    # A cursor of the other partition (another run's), or past the log: refused.
    partition, offset = cursor.split(":")
    foreign = f"{1 - int(partition)}:0"
    for bad in (foreign, f"{partition}:{int(offset) + 10_000_000}"):
        refused = await world.tidings("watch", run_id, "--from", bad)
        assert refused.code == 2, refused
        assert "not a cursor of this run" in refused.err


def printed(out: io.StringIO, text: str) -> Callable[[], bool]:
    return lambda: text in out.getvalue()


async def test_watch_joining_mid_step_prints_the_step_from_its_start(world: CliWorld) -> None:
    """A watch that joins while the draft streams shows the draft's earlier
    tokens before its live ones: the line reads from the first word, not from
    wherever the stream happened to be.

    The worker is frozen (SIGSTOP) inside the draft, well within the step's
    10 s heartbeat, so the watch joins mid-step for certain. The watch runs
    in-process (its stream and printer, against the real gateway): a child
    process would first ask the gateway for the run's status, which waits for
    the frozen worker's query answer."""
    assert world.worker is not None and world.worker.process is not None
    worker = world.worker.process
    headers = {"Authorization": f"Bearer {world.key}"}

    async def drafted(http: httpx.AsyncClient, run_id: str) -> tuple[str, bool]:
        """(the draft's tokens so far, whether the draft completed)"""
        page = (await http.get(f"/v1/runs/{run_id}/events", params={"limit": 1000})).json()
        events = [item["event"] for item in page["events"] if item["event"]["step"] == "draft"]
        text = "".join(e["data"]["text"] for e in events if e["type"] == "step.token")
        return text, any(e["type"] == "step.completed" for e in events)

    out = io.StringIO()
    async with httpx.AsyncClient(base_url=world.url, headers=headers) as http:
        for _ in range(3):  # a run whose draft finished before the freeze is no use
            run_id = await world.start_run()
            state: tuple[str, bool] = ("", False)

            async def drafting(run_id: str = run_id) -> bool:
                nonlocal state
                state = await drafted(http, run_id)
                return bool(state[0]) or state[1]

            await wait_for(drafting, 30, "the draft to start streaming", interval=0.02)
            if state[1]:
                continue
            worker.send_signal(signal.SIGSTOP)
            try:
                so_far, done = await drafted(http, run_id)
                if done:
                    continue
                args = argparse.Namespace(
                    run_id=run_id, gateway=world.url, from_start=False, from_cursor=None
                )
                watch = Watch(args, world.key, Printer(out, as_json=False))
                watching = asyncio.create_task(watch.run())
                # Before the run moves on, the watch shows the draft from its start.
                await wait_for(
                    printed(out, f"  draft | {so_far}"),
                    5,
                    "the watch to print the draft's earlier output",
                )
            finally:
                worker.send_signal(signal.SIGCONT)
            status = await asyncio.wait_for(watching, 60)
            break
        else:
            pytest.fail("no run could be frozen mid-draft")
    assert status == "COMPLETED"
    answer = (await world.finished(run_id))["result"]["answer"]
    text = out.getvalue()
    lines = text.splitlines()
    assert f"  draft | {answer}" in lines, text
    assert text.count(answer) == 1
    assert in_order(lines, STEP_LINES), text


def one_clear_line(result: Result, *needles: str) -> None:
    err = result.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    # A refusal is fixed by changing the command, never by "picking up" with it.
    assert "pick up with" not in err, err
    for needle in needles:
        assert needle in err, err


async def test_failures_exit_with_one_line_and_a_documented_code(world: CliWorld) -> None:
    unknown = f"{world.tenant}-{'0' * 32}"
    closed = f"http://127.0.0.1:{free_port()}"
    cases: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = [
        (("watch", unknown), 2, ("not_found",)),
        (("watch", unknown, "--api-key", "not-the-key-123"), 2, ("unauthorized",)),
        (("watch", unknown, "--gateway", closed), 3, (f"cannot reach the gateway at {closed}",)),
        (("watch", unknown, "--from", "nope"), 2, ("is not a cursor",)),
        (("run", "research", "--input", "{nope", "--watch"), 2, ("--input is not valid JSON",)),
        (("run", "resarch", "--input", "{}", "--watch"), 2, ("unknown_pipeline",)),
        (("run", "research", "--input", '{"question": ""}'), 2, ("validation_error",)),
        (("run", "research", "--gateway", closed), 3, ("cannot reach the gateway",)),
        (("events", unknown), 2, ("not_found",)),
    ]
    results = await asyncio.gather(*(world.tidings(*argv) for argv, _, _ in cases))
    for (argv, code, needles), result in zip(cases, results, strict=True):
        assert result.code == code, (argv, result)
        one_clear_line(result, *needles)
        assert "not-the-key-123" not in result.err
        assert result.out == "", (argv, result.out)
