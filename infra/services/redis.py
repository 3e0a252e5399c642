"""Debian's ``redis-server``, started by us (not the system service), AOF on."""

from __future__ import annotations

import shutil

from infra.errors import StackError
from infra.layout import Layout
from infra.ports import exchange
from infra.services.base import Port, Service

INSTALL_HINT = "run `tidings deps` (it runs: apt-get install -y redis-server)"


class Redis(Service):
    name = "redis"

    def __init__(self, layout: Layout, host: str, port: int) -> None:
        super().__init__(layout, host)
        self.port = port

    @property
    def ports(self) -> list[Port]:
        return [Port(self.port, "TIDINGS_STACK_REDIS_PORT")]

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _binary(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError(f"redis-server is not installed; {INSTALL_HINT}")
        return binary

    def check(self) -> None:
        self._binary()

    def prepare(self) -> None:
        self.layout.data(self.name).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            self._binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--daemonize",
            "no",
            "--dir",
            str(self.layout.data(self.name)),
            # Resume tokens must survive a restart: AOF, fsync each second; no RDB snapshots.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--logfile",
            "",
        ]

    def healthy(self) -> bool:
        # While it replays the AOF, Redis answers -LOADING: not ready yet.
        return exchange(self.host, self.port, b"PING\r\n").startswith(b"+PONG")

    def url(self) -> str:
        return self.redis_url
