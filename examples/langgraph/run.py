"""The example's one command: `.venv/bin/python examples/langgraph/run.py ["question"]`.

Against the local stack (`make up`): starts the graph worker (worker.py) and
a Tidings worker with the example's step and pipeline, runs the `library`
pipeline through the gateway and watches it live (`tidings run library
--watch`), then stops both workers. The usual TIDINGS_* variables point it
elsewhere (README.md's table).
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

HERE = Path(__file__).resolve().parent
TIDINGS = str(Path(sys.executable).parent / "tidings")
READY_WITHIN_SECONDS = 60


def _wait_ready(process: subprocess.Popen[str]) -> bool:
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


def main(argv: list[str]) -> int:
    question = argv[1] if len(argv) > 1 else "Who wrote Dune?"
    env = {**os.environ, "TIDINGS_WORKER_PIPELINES_DIR": str(HERE / "pipelines")}
    commands = {
        "graph worker": [sys.executable, str(HERE / "worker.py")],
        "tidings worker": [TIDINGS, "worker", "--activities", "steps:activities"],
    }
    with ExitStack() as stack:
        started = []
        for name, command in commands.items():
            log = stack.enter_context(tempfile.NamedTemporaryFile("w+", suffix=".log"))
            process = subprocess.Popen(
                command, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
            stack.callback(_stop, process)
            started.append((name, process, log))
        for name, process, log in started:
            if not _wait_ready(process):
                log.seek(0)
                print(f"the {name} did not start:\n{log.read()[-2000:]}", file=sys.stderr)
                return 1
        run = [TIDINGS, "run", "library", "--input", json.dumps({"question": question}), "--watch"]
        return subprocess.run(run, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
