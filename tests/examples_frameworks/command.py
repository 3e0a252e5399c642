"""Runs an example's one command (`python examples/<name>/run.py "question"`)
as the README says, in a session of its own: if it overruns, its whole
process group (the command and the workers it started) is stopped, so no
worker outlives the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run_example(name: str, question: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name / "run.py"),
        question,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=100)
    finally:
        if process.returncode is None:
            await _stop_group(process)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    # SIGTERM first: the workers stop cleanly; then SIGKILL whatever is left.
    for signum, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
            return
