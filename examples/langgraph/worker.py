"""The graph worker: `python examples/langgraph/worker.py [--pace-ms N]`.

Runs the graph's workflow and (through LangGraphPlugin) its nodes as
activities, on a task queue of its own; each node's stream writer publishes
into Tidings through the emitter (nodes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta

from library import GRAPH, LibraryGraphWorkflow, build, graph_task_queue
from nodes import agent_node, offline_model, streams_into_tidings, tools_node
from temporalio.common import RetryPolicy
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

from tidings.settings import Settings
from workers.build import connect_temporal, open_clients

# A node on a killed worker is retried after this much silence.
NODE_HEARTBEAT = timedelta(seconds=5)


async def serve(settings: Settings, pace_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = await connect_temporal(settings)
    async with open_clients(settings, client) as clients:
        limit = settings.model.tool_result_max_chars
        builder = build(
            streams_into_tidings(
                clients.emitter, "agent", limit, agent_node(offline_model(pace_seconds))
            ),
            streams_into_tidings(clients.emitter, "tools", limit, tools_node),
            {
                "start_to_close_timeout": timedelta(seconds=settings.model.timeout_seconds * 2),
                "heartbeat_timeout": NODE_HEARTBEAT,
                "retry_policy": RetryPolicy(maximum_attempts=5),
            },
        )
        queue = graph_task_queue(settings.temporal.task_queue)
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[LibraryGraphWorkflow],
            plugins=[LangGraphPlugin(graphs={GRAPH: builder})],
            graceful_shutdown_timeout=timedelta(seconds=settings.worker.shutdown_grace_seconds),
        )
        async with worker:
            print(f"langgraph worker: ready on task queue {queue}", flush=True)
            await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace-ms", type=float, default=30, help="offline model: ms per token")
    args = parser.parse_args()
    asyncio.run(serve(Settings(), args.pace_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
