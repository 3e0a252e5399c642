"""The examples' one command: start their workers, run their pipeline through
the gateway with ``tidings run --watch``, stop the workers.

Each example (examples/*/run.py) names its workers and pipeline; the local
stack (`make up`) or the usual TIDINGS_* variables say where the planes are.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

TIDINGS = str(Path(sys.executable).parent / "tidings")
READY_WITHIN_SECONDS = 60


def _wait_ready(process: subprocess.Popen[str]) -> bool:
    """True once the process prints that it is ready (workers print their task queue)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        if not selector.select(timeout=left):
            break
        line = process.stdout.readline()
        if not line:  # the process exited
            return False
        if "ready on task queue" in line:
            return True
    return False


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_example(folder: Path, pipeline: str, question: str, workers: dict[str, list[str]]) -> int:
    """Start ``workers`` (name -> argv, run in ``folder`` with its pipelines),
    run ``pipeline`` on ``question`` and watch it; the watch's exit code."""
    env = {**os.environ, "TIDINGS_WORKER_PIPELINES_DIR": str(folder / "pipelines")}
    with ExitStack() as stack:
        started = []
        for name, command in workers.items():
            log = stack.enter_context(tempfile.NamedTemporaryFile("w+", suffix=".log"))
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
            stack.callback(_stop, process)
            started.append((name, process, log))
        for name, process, log in started:
            if not _wait_ready(process):
                log.seek(0)
                print(f"the {name} did not start:\n{log.read()[-2000:]}", file=sys.stderr)
                return 1
        run = [TIDINGS, "run", pipeline, "--input", json.dumps({"question": question}), "--watch"]
        return subprocess.run(run, env=env, check=False).returncode
