"""Child processes of the tests: this interpreter running one of the repo's
modules from the repo root, and a long-running one whose output goes to a log
file, that a test can SIGKILL and start again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[1]


def stop_process(proc: subprocess.Popen[bytes], within: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited ``within`` seconds."""
    proc.terminate()
    try:
        proc.wait(within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter, so the child sees this venv."""
    return [sys.executable, "-m", module, *args]


async def spawn_module(module: str, *args: str, **options: Any) -> asyncio.subprocess.Process:
    """``python -m module args`` from the repo root; ``options`` as for
    :func:`asyncio.create_subprocess_exec` (pipes, env, session)."""
    return await asyncio.create_subprocess_exec(*module_argv(module, *args), cwd=ROOT, **options)


@dataclass
class ChildProcess:
    """One long-running child (a worker, a gateway), its output in ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    cwd: Path = ROOT

    async def start(self, ready: Callable[[], Awaitable[bool]], within: float) -> None:
        """Spawn it and wait until ``ready()``; an exit meanwhile fails at once, with its log."""
        await asyncio.to_thread(self.spawn)

        async def up() -> bool:
            return self.alive() and await ready()

        await wait_for(up, within, f"{self.name} to be ready")

    def spawn(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else None
            raise AssertionError(f"{self.name} exited ({code}){self.tail()}")
        return True

    def kill(self) -> None:
        """SIGKILL: no graceful close; its sockets just die."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 15)

    def tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f"\n--- {self.name} log ---\n{text}" if text.strip() else ""
