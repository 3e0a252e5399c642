"""Local TCP ports: is one taken, find a free one, does something answer on one."""

from __future__ import annotations

import socket


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just considered free (another process may still take it first).

    The kernel may offer the same port twice in a row once the probing socket is
    closed, and a caller often asks for several ports before binding any: ports
    already handed out in this process are never handed out again.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise OSError("no fresh free port after 100 tries")


def exchange(host: str, port: int, payload: bytes, *, timeout: float = 1.0) -> bytes:
    """Send ``payload`` and return the first bytes answered, or ``b""`` if nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(payload)
            return sock.recv(4096)
    except OSError:
        return b""
