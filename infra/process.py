"""Detached processes that we can find again, and only ours.

A PID alone is not an identity: after a reboot or a long uptime the kernel hands
the same number to an unrelated program. A PID file therefore records the
process start time (``/proc/<pid>/stat`` field 22, in clock ticks since boot)
and its command line; a process is ours only if both still match, and nothing
here ever signals a process that is not ours.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.errors import StackError

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRecord:
    """What a PID file holds."""

    service: str
    pid: int
    start_time: int
    cmdline: tuple[str, ...]
    log: str

    def dump(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)  # a reader never sees half a file

    @staticmethod
    def load(path: Path) -> ProcessRecord | None:
        """The record, or ``None`` if the file is missing or unreadable (a stale leftover)."""
        try:
            raw = json.loads(path.read_text())
            return ProcessRecord(
                service=str(raw["service"]),
                pid=int(raw["pid"]),
                start_time=int(raw["start_time"]),
                cmdline=tuple(str(part) for part in raw["cmdline"]),
                log=str(raw["log"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])


def proc_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0"))


def is_ours(record: ProcessRecord) -> bool:
    """True only if the recorded PID is alive and is still the process we started."""
    return (
        proc_start_time(record.pid) == record.start_time
        and proc_cmdline(record.pid) == record.cmdline
    )


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Spawned:
    """A process started by this invocation: its ``Popen`` keeps the PID reserved until reaped."""

    record: ProcessRecord
    popen: subprocess.Popen[bytes]

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def refresh(self, pid_file: Path) -> ProcessRecord:
        """Record the command line as the process now shows it.

        Some servers rewrite their title once running (redis-server does), so the
        identity we check later is the one taken after readiness, not the argv we passed.
        """
        cmdline = proc_cmdline(self.record.pid)
        if cmdline is not None and cmdline != self.record.cmdline:
            self.record = ProcessRecord(**{**asdict(self.record), "cmdline": cmdline})
            self.record.dump(pid_file)
        return self.record


def spawn(
    service: str,
    argv: Sequence[str],
    *,
    log: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> Spawned:
    """Start ``argv`` in its own session, detached from our terminal, output to ``log``.

    ``die_with_parent`` (for test stacks) has the kernel SIGTERM the process when this
    process exits, so a killed test run leaves no servers behind. The kernel's
    parent-death signal follows the *thread* that forked the child, so such children
    are forked from the main thread or from one thread kept for the life of the
    process (:func:`_on_lasting_thread`), never from a short-lived one: a restart run
    through ``asyncio.to_thread`` must not die when that executor thread does.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # Ctrl-C in the shell that ran `up` must not reach it
                preexec_fn=_parent_death_signal if die_with_parent else None,
            )

        try:
            popen = _on_lasting_thread(start) if die_with_parent else start()
        except OSError as exc:
            raise StackError(f"cannot start {service} ({argv[0]}): {exc.strerror}") from None
    start_time = proc_start_time(popen.pid) or 0
    record = ProcessRecord(service, popen.pid, start_time, tuple(argv), str(log))
    record.dump(pid_file)
    return Spawned(record, popen)


_forker: ThreadPoolExecutor | None = None
_forker_lock = threading.Lock()


def _on_lasting_thread(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``start`` on a thread that lives as long as the process: the main thread,
    or one idle worker thread kept until interpreter exit."""
    global _forker
    if threading.current_thread() is threading.main_thread():
        return start()
    with _forker_lock:
        if _forker is None:
            _forker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-forker")
    return _forker.submit(start).result()


def _parent_death_signal() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate(record: ProcessRecord, *, grace: float, popen: subprocess.Popen[bytes] | None) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only if the process is still ours.

    With ``popen`` (our own unreaped child) the PID cannot have been reused, so it is
    signalled through it; otherwise only after :func:`is_ours` confirmed the identity.
    Returns what happened: ``stopped``, ``killed`` or ``not running``.
    """
    if popen is not None:
        if popen.poll() is not None:
            return "not running"
        popen.terminate()
        try:
            popen.wait(grace)
            return "stopped"
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
            return "killed"
    if not _signal_if_ours(record, signal.SIGTERM):
        return "not running"
    if _wait_gone(record, grace):
        return "stopped"
    _signal_if_ours(record, signal.SIGKILL)
    _wait_gone(record, 10.0)
    return "killed"


def _signal_if_ours(record: ProcessRecord, signum: int) -> bool:
    """Signal through a pidfd taken *before* the identity check, so a process that exits
    and whose PID is reused between the check and the signal is not hit (ESRCH instead)."""
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    try:
        if not is_ours(record):
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def _wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_ours(record):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # not our child: we cannot wait(2) on it, only watch /proc
    return True
