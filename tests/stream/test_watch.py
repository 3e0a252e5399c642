"""``tidings watch`` against a real gateway: output, resume and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from cli import watch
from tests.stream.conftest import StreamEnv
from tests.stream.harness import script, served, temporal_run
from tidings.events import Event

pytestmark = [pytest.mark.integration]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidings watch")
    watch.configure(parser)
    return parser.parse_args(argv)


async def test_watch_prints_steps_tokens_and_exit_codes(
    stream_env: StreamEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    env = stream_env
    settings = env.settings()
    key = env.key(env.tenant)
    async with (
        served(settings) as (gw, em),
        temporal_run(env.temporal, env.tenant) as ok_run,
        temporal_run(env.temporal, env.tenant) as failed_run,
    ):
        events = script(env.tenant, ok_run, tokens=3)
        for event in events:
            await em.emit(event)
        code = await asyncio.to_thread(
            watch.main, parse(ok_run, "--gateway", gw.url, "--api-key", key, "--from-start")
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "step draft started (attempt 1)" in out
        assert "  draft | t0 t1 t2 \n" in out
        assert out.rstrip().endswith("run completed")

        code = await asyncio.to_thread(
            watch.main, parse(ok_run, "--gateway", gw.url, "--api-key", key, "--json")
        )
        lines = capsys.readouterr().out.splitlines()
        assert code == 0
        # History tokens are skipped without --from-start; every state event is there.
        assert [json.loads(line)["id"] for line in lines] == [
            e.id for e in events if e.type != "step.token"
        ]

        for event in [
            Event("run.started", env.tenant, failed_run, None, 1, 0),
            Event("step.failed", env.tenant, failed_run, "draft", 3, 0, {"error": "boom"}),
            Event("run.failed", env.tenant, failed_run, None, 1, 0, {"error": "boom"}),
        ]:
            await em.emit(event)
        code = await asyncio.to_thread(
            watch.main, parse(failed_run, "--gateway", gw.url, "--api-key", key)
        )
        out = capsys.readouterr().out
        assert code == 1
        assert "step draft failed (attempt 3): boom" in out

        # Terminated in Temporal: no terminal event will ever come, yet the
        # stream ends (with Temporal's status) instead of hanging.
        async with temporal_run(env.temporal, env.tenant) as killed_run:
            await env.temporal.get_workflow_handle(killed_run).terminate("operator")
            await em.emit(Event("run.started", env.tenant, killed_run, None, 1, 0))
            code = await asyncio.to_thread(
                watch.main, parse(killed_run, "--gateway", gw.url, "--api-key", key)
            )
            out = capsys.readouterr().out
            assert code == 1
            assert out.splitlines() == ["run started", "run terminated"]

        code = await asyncio.to_thread(
            watch.main, parse(ok_run, "--gateway", gw.url, "--api-key", "not-a-real-key")
        )
        assert code == 2
        assert "invalid API key" in capsys.readouterr().err
