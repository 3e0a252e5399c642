"""Runs ``drive.mjs`` (Playwright in Node) as a child process and reads its reports.

The script prints one JSON object per line; :meth:`Driver.expect` waits, with
a deadline, for the next report of a given kind, so a test can act at the
right moment (drop the socket once the page is streaming) without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from infra.browser import Browser
from tidings.run_state import reduce_run, visible

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "drive.mjs"
ARTIFACTS = HERE.parent / "artifacts"


class DriverFailed(AssertionError):
    pass


class Driver:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.reports: list[dict[str, Any]] = []
        self._stderr: list[str] = []

    async def expect(self, kind: str, timeout: float = 40.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next report of ``kind``; fails on a ``failed`` report, an exit or the deadline."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        await self.process.wait()
                        raise DriverFailed(
                            f"drive.mjs exited ({self.process.returncode}) before {kind!r}"
                            f"{self._stderr_tail()}"
                        )
                    try:
                        report: dict[str, Any] = json.loads(line)
                    except ValueError:
                        continue  # not a report (a stray log line)
                    self.reports.append(report)
                    if report.get("event") == "failed":
                        raise DriverFailed(f"drive.mjs: {report.get('error')}{self._stderr_tail()}")
                    if report.get("event") == kind:
                        return report
        except TimeoutError:
            raise DriverFailed(f"no {kind!r} report within {timeout:g}s: {self.reports}") from None

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def _stderr_tail(self) -> str:
        text = "".join(self._stderr[-40:]).strip()
        return f"\n--- stderr ---\n{text}" if text else ""


@asynccontextmanager
async def drive(browser: Browser, url: str, scenario: str, **options: str) -> AsyncIterator[Driver]:
    """Start ``drive.mjs`` on ``url``; ``options`` become ``TIDINGS_<NAME>`` variables."""
    env = {
        **os.environ,
        **browser.env(),
        "TIDINGS_URL": url,
        "TIDINGS_SCENARIO": scenario,
        **{f"TIDINGS_{name.upper()}": value for name, value in options.items()},
    }
    process = await asyncio.create_subprocess_exec(
        str(browser.node),
        str(SCRIPT),
        cwd=browser.root,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    driver = Driver(process)
    drain = asyncio.create_task(driver._drain_stderr())
    try:
        yield driver
    finally:
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def page_state(report: dict[str, Any]) -> dict[str, Any]:
    """The run's state the page rendered (the client's ``reduceRun``), without
    its bookkeeping: comparable with :func:`clean_read`."""
    state = report["state"]
    assert isinstance(state, dict), f"the page exposes no run state: {report}"
    return {key: value for key, value in state.items() if key not in ("tokenSeq", "own")}


def clean_read(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The state a clean read of ``events`` gives (tidings.run_state, the
    Python twin of the client's reducer)."""
    state = None
    for event in events:
        state = reduce_run(state, event)
    assert state is not None, "no events"
    return visible(state)
