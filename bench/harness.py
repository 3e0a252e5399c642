"""Process plumbing shared by the workloads: servers and client-load processes
run as separate OS processes; every wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_healthy(port: int, timeout: float, proc: subprocess.Popen[Any]) -> None:
    """Until ``GET /healthz`` on the port answers 200 (or the process exits)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"127.0.0.1:{port}/healthz not 200 after {timeout}s")


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (it is, with uvicorn[standard]):
    a client process's event loop must cost less than the server it measures."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def raise_fd_limit(want: int = 65536) -> None:
    """As high as allowed: root may raise the hard limit itself."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads (not its children)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def pid_listening(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port (ours to measure, not to stop)."""
    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    marker = "pid="
    at = out.find(marker)
    if at < 0:
        return None
    digits = out[at + len(marker) :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def server(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    *,
    timeout: float = 60.0,
    log: Path | None = None,
) -> Iterator[Server]:
    out: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        out = open(log, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=out,
        start_new_session=True,
        cwd=ROOT,
        preexec_fn=raise_fd_limit,
    )
    try:
        try:
            wait_port(port, timeout, proc)
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-1500:] if log is not None else ""
            raise RuntimeError(f"{exc}: {tail}") from None
        yield Server(proc, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if not isinstance(out, int):
            out.close()


@dataclass
class LoadProcess:
    proc: subprocess.Popen[str]

    def _line(self, timeout: float) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        # readline blocks; the load process always answers or exits, and the
        # select below bounds the wait.
        import select

        buffer = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                buffer += stdout.readline()
                if buffer.endswith("\n"):
                    parsed: dict[str, Any] = json.loads(buffer)
                    return parsed
            if self.proc.poll() is not None:
                raise RuntimeError(f"load process exited with {self.proc.returncode}")
        raise TimeoutError("load process said nothing in time")

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def ready(self, timeout: float = 180.0) -> dict[str, Any]:
        return self._line(timeout)

    def measure_start(self, expect: int, timeout: float, since_ns: int = 0, **tally: Any) -> None:
        """``tally``: bench.loadgen's --tally options (until, cut_ns, start_ns, rate)."""
        self.send(cmd="measure", expect=expect, timeout=timeout, since_ns=since_ns, **tally)

    def measure_result(self, timeout: float) -> dict[str, Any]:
        return self._line(timeout + 30)

    def close_sockets(self) -> dict[str, Any]:
        self.send(cmd="close")
        return self._line(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)


def write_targets(targets: Sequence[tuple[str, str | None]]) -> str:
    """Write loadgen targets to a temporary JSON file (argv is too small for 1,000)."""
    handle, path = tempfile.mkstemp(prefix="bench-targets-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump([list(t) for t in targets], file)
    return path


@contextmanager
def load(
    processes: int, clients: int, module: str = "bench.loadgen", **options: Any
) -> Iterator[list[LoadProcess]]:
    """Spawn ``processes`` load generators sharing ``clients`` sockets; options
    become --flags of bench.loadgen. Each gets a slice of the targets.
    ``module``: another program speaking loadgen's protocol, for a system whose
    clients are not WebSockets (bench/peers/kafka_alone.py)."""
    procs: list[LoadProcess] = []
    try:
        per, extra = divmod(clients, processes)
        offset = 0
        for i in range(processes):
            count = per + (1 if i < extra else 0)
            argv = [PYTHON, "-m", module, "--clients", str(count), "--offset", str(offset)]
            offset += count
            for key, value in options.items():
                flag = "--" + key.replace("_", "-")
                if value is True:
                    argv.append(flag)
                elif value is not False and value is not None:
                    argv += [flag, str(value)]
            procs.append(
                LoadProcess(
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        cwd=ROOT,
                    )
                )
            )
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# Where the latency CDF is sampled (percent): every percent, then the tail.
CDF_PERCENTS = (*range(0, 100), 99.5, 99.9, 99.95, 99.99, 100)


def latency_summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    """The latency figures every system reports, from samples in ms, with the
    distribution at :data:`CDF_PERCENTS` for the CDF chart."""
    ordered = sorted(samples_ms)
    cdf = [round(percentile(ordered, q), 3) for q in CDF_PERCENTS] if ordered else []
    return {
        "cdf_ms": cdf,
        "samples": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "p999_ms": round(percentile(samples_ms, 99.9), 2),
        "max_ms": round(max(samples_ms), 2) if samples_ms else None,
    }
