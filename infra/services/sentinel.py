"""Redis Sentinel (Debian's ``redis-server --sentinel``): three of them watch the
stack's Redis primary and promote its replica when the primary dies.

``tidings up --redis-sentinel`` and the failover test start this same topology:
a primary, one replica, three sentinels with a quorum of two. Timeouts are short
(a primary is "down" after :data:`DOWN_AFTER_MS`) so a failover takes seconds,
which suits a laptop and a test; production sentinels usually wait longer.
"""

from __future__ import annotations

import re

from infra.layout import Layout
from infra.ports import exchange
from infra.services.base import Port, Service
from infra.services.redis import Redis

MASTER_NAME = "tidings"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class RedisSentinel(Service):
    def __init__(self, layout: Layout, host: str, port: int, number: int, primary: Redis) -> None:
        super().__init__(layout, host)
        self.name = f"redis-sentinel-{number}"
        self.port = port
        self.primary = primary

    @property
    def ports(self) -> list[Port]:
        return [Port(self.port, "TIDINGS_STACK_REDIS_SENTINEL_PORT")]

    @property
    def config_file(self) -> str:
        return str(self.layout.data(self.name) / "sentinel.conf")

    def prepare(self) -> None:
        # Sentinel rewrites its own config (what it learnt: replicas, peers,
        # the current master), so each start gets a fresh one from the stack.
        folder = self.layout.data(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sentinel.conf").write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {self.host}",
                    "daemonize no",
                    'logfile ""',
                    f"dir {folder}",
                    f"sentinel monitor {MASTER_NAME} {self.primary.host} {self.primary.port} "
                    f"{QUORUM}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        return [self.primary._binary(), self.config_file, "--sentinel"]

    def healthy(self) -> bool:
        # Ready once it knows the replica and both other sentinels: before
        # that, a dead primary could not be failed over.
        answer = exchange(self.host, self.port, f"SENTINEL MASTER {MASTER_NAME}\r\n".encode())
        fields = dict(re.findall(rb"\$\d+\r\n([a-z-]+)\r\n\$\d+\r\n([^\r]*)\r\n", answer))
        replicas = int(fields.get(b"num-slaves", b"0"))
        return replicas >= 1 and fields.get(b"num-other-sentinels") == b"2"


def sentinel_topology(
    layout: Layout, host: str, primary: Redis, replica_port: int, sentinel_port: int
) -> tuple[Redis, list[RedisSentinel]]:
    """The replica of ``primary`` and three sentinels on consecutive ports."""
    replica = Redis(
        layout,
        host,
        replica_port,
        name="redis-replica",
        setting="TIDINGS_STACK_REDIS_REPLICA_PORT",
        replica_of=primary,
    )
    sentinels = [RedisSentinel(layout, host, sentinel_port + i, i + 1, primary) for i in range(3)]
    return replica, sentinels


def sentinels_setting(sentinels: list[RedisSentinel]) -> str:
    """``TIDINGS_REDIS_SENTINELS`` for these sentinels."""
    return ",".join(f"{s.host}:{s.port}" for s in sentinels)
