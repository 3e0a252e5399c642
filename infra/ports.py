"""Local TCP ports: is one taken, find a free one, does something answer on one."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def in_use(host: str, port: int) -> bool:
    """True if something already listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT looks taken; the servers we start set it too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


_HANDED_OUT: set[int] = set()
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Listening ports come from below the kernel's ephemeral range: a port from
# inside it can be taken by any outgoing connection (a Kafka or Temporal
# client's) between the moment it is found free and the moment a server binds
# it, and a busy test session makes thousands of those.
_LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port(host: str = "127.0.0.1", *, block: int = 1) -> int:
    """The first of ``block`` consecutive ports nothing listens on now, below the
    ephemeral range (another process may still take one first).

    A caller often asks for several ports before binding any, so ports
    already handed out in this process are never handed out again; the
    random start keeps processes asking at once (test sessions, benchmarks)
    apart.
    """
    top = _ephemeral_start() - block
    if top <= _LOWEST:
        raise OSError("no room for listening ports below the ephemeral range")
    start = random.randrange(_LOWEST, top)
    span = top - _LOWEST
    for step in range(min(span, 2000)):
        port = _LOWEST + (start - _LOWEST + step * 7) % span
        ports = range(port, port + block)
        if any(p in _HANDED_OUT for p in ports) or any(in_use(host, p) for p in ports):
            continue
        _HANDED_OUT.update(ports)
        return port
    raise OSError(f"no {block} free consecutive ports after 2000 tries")


def exchange(host: str, port: int, payload: bytes, *, timeout: float = 1.0) -> bytes:
    """Send ``payload`` and return the first bytes answered, or ``b""`` if nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(payload)
            return sock.recv(4096)
    except OSError:
        return b""
