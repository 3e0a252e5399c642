"""The example's one command: `.venv/bin/python examples/pydantic_ai/run.py ["question"]`.

Against the local stack (`make up`): starts a worker with your agent's step
and pipeline, runs the `trip` pipeline through the gateway and watches it
live (`tidings run trip --watch`), then stops the worker. The usual
TIDINGS_* variables point it elsewhere (README.md's table).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIDINGS = str(Path(sys.executable).parent / "tidings")
READY_WITHIN_SECONDS = 60


def _wait_ready(worker: subprocess.Popen[str]) -> bool:
    assert worker.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(worker.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        if not selector.select(timeout=left):
            break
        line = worker.stdout.readline()
        if not line:  # the worker exited
            return False
        if "ready on task queue" in line:
            return True
    return False


def main(argv: list[str]) -> int:
    question = argv[1] if len(argv) > 1 else "Plan a trip to Lisbon"
    env = {**os.environ, "TIDINGS_WORKER_PIPELINES_DIR": str(HERE / "pipelines")}
    with tempfile.NamedTemporaryFile("w+", prefix="trip-worker-", suffix=".log") as log:
        worker = subprocess.Popen(
            [TIDINGS, "worker", "--activities", "trip:activities"],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            if not _wait_ready(worker):
                log.seek(0)
                print(f"the trip worker did not start:\n{log.read()[-2000:]}", file=sys.stderr)
                return 1
            run = [TIDINGS, "run", "trip", "--input", json.dumps({"question": question}), "--watch"]
            return subprocess.run(run, env=env, check=False).returncode
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
