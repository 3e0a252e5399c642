"""Debian's ``redis-server``, started by us (not the system service), AOF on.

With ``replica_of`` it starts as a replica of that primary (the Sentinel
topology, :mod:`infra.services.sentinel`)."""

from __future__ import annotations

import shutil

from infra.errors import StackError
from infra.layout import Layout
from infra.ports import exchange
from infra.services.base import Port, Service

INSTALL_HINT = "run `tidings deps` (it runs: apt-get install -y redis-server)"


class Redis(Service):
    name = "redis"

    def __init__(
        self,
        layout: Layout,
        host: str,
        port: int,
        *,
        name: str = "redis",
        setting: str = "TIDINGS_STACK_REDIS_PORT",
        replica_of: Redis | None = None,
    ) -> None:
        super().__init__(layout, host)
        self.name = name
        self.port = port
        self.setting = setting
        self.replica_of = replica_of

    @property
    def ports(self) -> list[Port]:
        return [Port(self.port, self.setting)]

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
            *self._replication(),
        ]

    def _replication(self) -> list[str]:
        if self.replica_of is None:
            return []
        return ["--replicaof", self.replica_of.host, str(self.replica_of.port)]

    def healthy(self) -> bool:
        # While it replays the AOF, Redis answers -LOADING: not ready yet.
        if not exchange(self.host, self.port, b"PING\r\n").startswith(b"+PONG"):
            return False
        if self.replica_of is None:
            return True
        # A replica is ready once it has synced (Sentinel can promote it then),
        # or once Sentinel promoted it.
        info = exchange(self.host, self.port, b"INFO replication\r\n")
        return b"master_link_status:up" in info or b"role:master" in info

    def url(self) -> str:
        return self.redis_url
