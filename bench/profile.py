"""Sampling profiles of a server under a workload, for finding what to cut.

``python -m bench --profile DIR`` attaches ``py-spy`` (``pip install py-spy``
in the venv; not a dependency of the project) to each measured server process
for the measured part of F, O2 and O3 only, and writes ``DIR/<system>-<workload>.txt``
(py-spy's raw, collapsed stacks) plus a summary of the top functions beside it.
Sampling does not slow the process it samples much (py-spy reads its memory
from outside), but it takes CPU of its own: the figures of a profiled run are
for finding what to cut, not for the tables.

``python -m bench.profile FILE`` prints the summary of a raw file again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_ENV = "TIDINGS_BENCH_PROFILE"
_RATE = 250  # samples per second
_LIMIT_S = 600  # py-spy stops by itself after this, whatever happens here


def directory() -> Path | None:
    value = os.environ.get(_ENV)
    return Path(value) if value else None


def enable(path: Path) -> None:
    """Profile the rest of this run into ``path`` (the ``--profile`` flag)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = str(path)


@contextmanager
def sampled(name: str, pid: int) -> Iterator[None]:
    """Sample ``pid`` while the block runs, if profiling is on; else nothing."""
    where = directory()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if where is None or not Path(spy).exists():
        yield
        return
    raw = where / f"{name}.txt"
    argv = [spy, "record", "--pid", str(pid), "--rate", str(_RATE), "--format", "raw",
            "--duration", str(_LIMIT_S), "--output", str(raw), "--nonblocking"]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if raw.exists():
            raw.with_suffix(".summary.txt").write_text(summary(raw))


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def summary(raw: Path, top: int = 25) -> str:
    """Top functions by own samples (where the CPU is) and by inclusive samples
    (what costs the most with all it calls), in percent of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    lines = [f"{raw.name}: {total} samples at {_RATE}/s"]
    for title, counts in (("own", own), ("inclusive", inclusive)):
        lines.append(f"-- top {top} by {title} samples")
        for frame, count in counts.most_common(top):
            lines.append(f"{100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: one row per
    function, not per line."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(module).parts
    return f"{name} ({'/'.join(parts[-2:])})" if parts else name


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summary(Path(arg)))
