"""Container healthchecks for the Tidings image (run by Docker, not by the app).

``healthcheck.py http URL``  exits 0 when URL answers 2xx (the gateway's /healthz).
``healthcheck.py worker``    exits 0 when this container's worker has polled the
task queue recently, as Temporal's own poller list shows it. Worker identities
are ``<pid>@<hostname>`` (the SDK's default), so the container's hostname finds it.
Workflow or activity polls both count: a worker whose activity slots are all
busy with long steps stops polling for activities, and is still healthy.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import urllib.request

RECENT_POLL_SECONDS = 120.0  # Temporal long polls last about a minute.


def check_http(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (fixed local URL)
            status: int = response.status
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if 200 <= status < 300 else 1


async def _worker_polls(hostname: str) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from tidings.settings import TemporalSettings, load
    from tidings.temporal_connect import connect_temporal

    settings = load(TemporalSettings)
    client = await connect_temporal(settings)
    now = time.time()
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=kind,
            )
        )
        mine = [p for p in response.pollers if p.identity.endswith(f"@{hostname}")]
        if any(now - p.last_access_time.seconds < RECENT_POLL_SECONDS for p in mine):
            return True
    return False


def check_worker() -> int:
    hostname = socket.gethostname()
    try:
        healthy = asyncio.run(asyncio.wait_for(_worker_polls(hostname), timeout=8))
    except Exception as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: no recent poller with identity *@{hostname}", file=sys.stderr)
    return 0 if healthy else 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        return check_http(argv[1])
    if argv == ["worker"]:
        return check_worker()
    print("usage: healthcheck.py http URL | healthcheck.py worker", file=sys.stderr)
    return 2


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal client's runtime threads can abort
    # it, which would turn a clean answer into exit 134.
    os._exit(code)
