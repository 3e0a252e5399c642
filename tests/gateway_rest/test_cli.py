"""`tidings run` and `tidings events` against a real gateway, through the CLI dispatcher."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest
from aiokafka import AIOKafkaProducer

from cli import main as cli
from cli import watch
from tests.gateway_rest.helpers import ACME_KEY, Runs
from tests.support import free_port
from tidings.events import Event, EventType
from tidings.settings import Settings

pytestmark = pytest.mark.integration


async def tidings(*argv: str) -> int:
    # A thread: the CLI blocks on HTTP while the stub worker runs on this loop.
    return await asyncio.to_thread(cli.main, list(argv))


async def test_run_prints_the_new_run(
    gateway_url: str, runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await tidings(
        "run", "echo", "--input", '{"text": "hi"}', "--gateway", gateway_url, "--json"
    )
    out = capsys.readouterr().out
    assert code == 0, out
    started = json.loads(out)
    runs.track(started["run_id"])
    assert started["run_id"].startswith("demo-") and started["status"] == "RUNNING"


async def test_run_watch_delegates_to_the_watch_command(
    gateway_url: str, runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[argparse.Namespace] = []

    def main(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(watch, "main", main)
    code = await tidings(
        "run", "approval", "--input", '{"text": "w"}', "--gateway", gateway_url, "--watch"
    )
    assert code == 0
    runs.track(seen[0].run_id)
    assert seen[0].run_id.startswith("demo-") and seen[0].gateway == gateway_url
    assert seen[0].from_start


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "echo", "--input", "{nope"], "--input is not valid JSON"),
        (["run", "echo", "--input", "[1]"], "--input must be a JSON object"),
        (["run", "nope", "--input", "{}"], "unknown_pipeline: unknown pipeline 'nope'"),
        (["run", "echo", "--input", '{"text": 1}'], "validation_error: input.text"),
        (["run", "echo", "--api-key", "wrong-key-123"], "unauthorized: invalid API key"),
        (["events", "demo-00000000000000000000000000000000"], "not_found: run not found"),
        (["events", "demo-00000000000000000000000000000000", "--after", "x"], "bad_request"),
    ],
)
async def test_failures_exit_non_zero_with_one_clear_line(
    gateway_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code = await tidings(*argv, "--gateway", gateway_url)
    err = capsys.readouterr().err
    assert code == 2  # refused (docs/cli.md)
    assert expected in err
    assert "wrong-key-123" not in err and "Traceback" not in err


async def test_unreachable_gateway_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code = await tidings("run", "echo", "--input", "{}", "--gateway", closed)
    err = capsys.readouterr().err
    assert code == 3  # unavailable (docs/cli.md)
    assert f"cannot reach the gateway at {closed}" in err


async def test_events_prints_the_stored_events(
    gateway_url: str,
    runs: Runs,
    rest_settings: Settings,
    events_topic_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await tidings("run", "approval", "--input", '{"text": "e"}', "--gateway", gateway_url,
                         "--json") == 0  # fmt: skip
    run_id = runs.track(json.loads(capsys.readouterr().out)["run_id"])
    producer = AIOKafkaProducer(bootstrap_servers=rest_settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for seq in range(3):
            event = Event(EventType.STEP_TOKEN, "demo", run_id, "draft", 1, seq, {"text": "x"})
            await producer.send_and_wait(events_topic_name, event.to_bytes(), key=run_id.encode())
    finally:
        await producer.stop()

    assert await tidings("events", run_id, "--gateway", gateway_url, "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"]["seq"] for line in lines] == [0, 1, 2]

    assert await tidings("events", run_id, "--gateway", gateway_url, "--after",
                         lines[0]["cursor"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "step.token" in captured.out
    assert f"2 event(s); resume with --after {lines[2]['cursor']}" in captured.err

    # Another tenant's key sees no such run.
    assert await tidings("events", run_id, "--gateway", gateway_url, "--api-key", ACME_KEY) == 2
