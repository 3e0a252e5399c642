"""Restarting a stack service from a worker thread must not tie its life to that thread.

The fault cases restart Kafka, Redis and Temporal through ``asyncio.to_thread``
(so the clients in the loop keep streaming meanwhile). ``infra.process.spawn``
gives test-stack services a parent-death signal, which the kernel ties to the
*thread* that forked them: before the fix, a service restarted from an
executor thread was SIGTERMed as soon as that thread ended (at the latest
when the session loop closed its executor), and the session's last tests and
teardown found Kafka gone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from pathlib import Path

from infra.process import Spawned, spawn, terminate


def test_die_with_parent_child_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    spawned: list[Spawned] = []

    def start() -> None:
        spawned.append(
            spawn(
                "sleeper",
                [sys.executable, "-c", "import time; time.sleep(60)"],
                log=tmp_path / "sleeper.log",
                pid_file=tmp_path / "sleeper.json",
                die_with_parent=True,
            )
        )

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(30)
    assert spawned, "spawn did not return"
    child = spawned[0]
    try:
        # The starting thread is gone: the child must still be running a second later.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1.0)
        assert child.popen.poll() is None, (
            f"the child died with its thread ({child.popen.returncode})"
        )
    finally:
        terminate(child.record, grace=5, popen=child.popen)
