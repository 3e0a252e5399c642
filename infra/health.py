"""Is a service healthy: waiting for a whole group at start, and one probe for ``status``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from infra.errors import StackError
from infra.layout import Layout
from infra.process import ProcessRecord, Spawned, is_ours, rss_bytes
from infra.services.base import Service


@dataclass(frozen=True)
class Row:
    service: str
    address: str
    pid: int | None
    health: str  # healthy | unhealthy | stopped | stale pid file
    rss: int | None = None  # bytes


def probe(name: str, service: Service | None, layout: Layout) -> Row:
    address = service.url() if service else ""
    record = ProcessRecord.load(layout.pid_file(name))
    if record is None:
        return Row(name, address, None, "stopped")
    if not is_ours(record):
        return Row(name, address, record.pid, "stale pid file")
    if service is not None:
        service.attach(record.pid, started_at=0.0)
    ok = service is not None and service.healthy()
    return Row(name, address, record.pid, "healthy" if ok else "unhealthy", rss_bytes(record.pid))


def wait_healthy(
    services: list[Service],
    children: Mapping[str, Spawned],
    layout: Layout,
    deadline: float,
    timeout: float,
) -> None:
    """Return once every service answers its probe; raise as soon as one of ``children``
    exits, or at ``deadline``. Probes run in turn, each bounded by its own timeout."""
    pending = list(services)
    while pending:
        for service in list(pending):
            child = children.get(service.name)
            code = child.exit_code() if child else None
            if child is not None and code is not None:
                raise StackError(
                    f"{service.name} exited while starting (exit code {code}): "
                    f"{layout.log_tail(service.name)[:300]} (log: {layout.log(service.name)})"
                )
            if service.healthy():
                pending.remove(service)
                if child is not None:
                    child.refresh(layout.pid_file(service.name))
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise StackError(
                f"{names} not healthy within {timeout:.0f}s "
                f"(TIDINGS_STACK_START_TIMEOUT_SECONDS); logs in {layout.logs_dir}"
            )
        if pending:
            time.sleep(0.1)  # the pause between rounds of probes, not a wait for readiness
