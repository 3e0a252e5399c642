"""``tidings gateway --processes N``: one gateway per core behind one port.

A parent process binds N listening sockets on the same address with
``SO_REUSEPORT`` and starts N children, ``tidings gateway --fd K``, each
serving one of them with its own event loop, clients and Kafka tails. The
kernel spreads new connections over the sockets by their address hash.

Why the parent binds and keeps the sockets, rather than each child binding
its own: a port already taken fails once, before anything starts; and a
crashed child's socket outlives it, so connections hashed to it wait in its
accept queue for the replacement instead of being reset.

The parent forwards SIGTERM/SIGINT to every child (each drains its stream
sockets with 1001, ``gateway.server.command.DrainingServer``), replaces a child that
dies on its own, and gives up, stopping the others, when one keeps dying at
start (a configuration the parent could not check, say).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from tidings.errors import ConfigError

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default
POLL_SECONDS = 0.2
# A child that ran at least this long was healthy: its next death restarts at once.
STEADY_SECONDS = 10.0
# Consecutive early deaths of one child before the supervisor gives up.
MAX_EARLY_DEATHS = 5
MAX_RESTART_DELAY = 5.0
_PR_SET_PDEATHSIG = 1


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket that children inherit."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def restart_delay(early_deaths: int) -> float:
    """Seconds before restarting a child that died ``early_deaths`` times in a row
    soon after its start: none after a steady life, then doubling, capped."""
    if early_deaths <= 1:
        return 0.0
    return float(min(0.25 * 2 ** (early_deaths - 1), MAX_RESTART_DELAY))


def _die_with_parent() -> None:
    """Runs in the child before exec: if the supervisor is killed (SIGKILL, so it
    cannot forward anything), the child still gets SIGTERM and drains."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Slot:
    """One child's place: its sockets survive the child, so a replacement takes them over."""

    index: int
    fds: tuple[int, ...]
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    early_deaths: int = 0
    restart_at: float = 0.0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        slots: Sequence[Slot],
        *,
        stop_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = list(slots)
        self.stop_seconds = stop_seconds
        self._clock = clock
        self._stopping = threading.Event()

    def run(self, on_stop: Callable[[], None]) -> int:
        """Serve until SIGTERM/SIGINT (0) or until a child keeps dying (1).
        ``on_stop`` closes the parent's copies of the listening sockets."""
        previous = {
            signum: signal.signal(signum, self._ask_stop)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self.slots:
                self._start(slot)
            failed = False
            while not self._stopping.wait(POLL_SECONDS):
                if not self._tend():
                    failed = True
                    break
            on_stop()
            self._stop_all()
            return 1 if failed else 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _ask_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping.set()

    def _start(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(
            slot.argv,
            pass_fds=slot.fds,
            # Its own session: a terminal's Ctrl-C reaches only the parent,
            # which forwards one SIGTERM (a second signal would make uvicorn
            # skip the drain).
            start_new_session=True,
            preexec_fn=_die_with_parent,  # the supervisor runs no threads, so this is safe
        )
        slot.started = self._clock()
        slot.pids.append(slot.process.pid)
        log.info(
            "gateway process started", extra={"process_index": slot.index, "pid": slot.process.pid}
        )

    def _tend(self) -> bool:
        """Restart children that died; False once one keeps dying at start."""
        now = self._clock()
        for slot in self.slots:
            if slot.process is None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            code = slot.process.poll()
            if code is None:
                continue
            lived = now - slot.started
            slot.early_deaths = 0 if lived >= STEADY_SECONDS else slot.early_deaths + 1
            log.warning(
                "gateway process exited; replacing it",
                extra={
                    "process_index": slot.index,
                    "pid": slot.process.pid,
                    "exit_code": code,
                    "lived_seconds": round(lived, 1),
                },
            )
            slot.process = None
            if slot.early_deaths >= MAX_EARLY_DEATHS:
                log.error(
                    "gateway process keeps exiting at start; stopping",
                    extra={"process_index": slot.index, "exit_code": code},
                )
                return False
            slot.restart_at = now + restart_delay(slot.early_deaths)
        return True

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = self._clock() + self.stop_seconds
        for process in running:
            try:
                process.wait(timeout=max(deadline - self._clock(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("gateway process did not stop in time; killing it")
                process.kill()
                process.wait()


def child_argv(fd: int, metrics_fd: int | None) -> list[str]:
    argv = [sys.executable, "-m", "cli", "gateway", "--fd", str(fd)]
    if metrics_fd is not None:
        argv += ["--metrics-fd", str(metrics_fd)]
    return argv


def serve_processes(
    host: str, port: int, processes: int, metrics_port: int | None, *, stop_seconds: float
) -> int:
    """Bind, start ``processes`` children, supervise them until told to stop."""
    sockets: list[socket.socket] = []
    try:
        slots = []
        for index in range(processes):
            shared = listening_socket(host, port, reuse_port=True)
            sockets.append(shared)
            own = None
            if metrics_port is not None:
                own = listening_socket(host, metrics_port + index, reuse_port=False)
                sockets.append(own)
            fds = (shared.fileno(),) + ((own.fileno(),) if own is not None else ())
            argv = child_argv(shared.fileno(), own.fileno() if own is not None else None)
            slots.append(Slot(index, fds, argv))
        log.info(
            "gateway supervisor listening",
            extra={"host": host, "port": port, "processes": processes, "pid": os.getpid()},
        )

        def close_sockets() -> None:
            # The children hold their own copies; once they close theirs in the
            # drain, the port is free.
            for sock in sockets:
                sock.close()

        return Supervisor(slots, stop_seconds=stop_seconds).run(close_sockets)
    finally:
        for sock in sockets:
            sock.close()
