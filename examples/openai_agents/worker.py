"""The agent worker: `python examples/openai_agents/worker.py [--pace-ms N]`.

Runs the agent's workflow, its tool and (through OpenAIAgentsPlugin) its
model requests, on a task queue of its own, with a Temporal client of its
own: the plugin installs its payload converter on the client it is given,
and Tidings' worker keeps its default one. Model requests stream into
Tidings through its emitter (streaming.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta

from streaming import TidingsModelProvider, build_model
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
from temporalio.worker import Worker
from weather import WeatherAgentWorkflow, agent_task_queue, get_weather

from tidings.settings import Settings
from workers.build import connect_temporal, open_clients

# A model request on a killed worker is retried after this much silence.
MODEL_HEARTBEAT = timedelta(seconds=5)


async def serve(settings: Settings, pace_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    base = await connect_temporal(settings)
    async with open_clients(settings, base) as clients:
        provider = TidingsModelProvider(
            build_model(settings.model, pace_seconds),
            clients.emitter,
            settings.model.tool_result_max_chars,
        )
        plugin = OpenAIAgentsPlugin(
            model_params=ModelActivityParameters(
                start_to_close_timeout=timedelta(seconds=settings.model.timeout_seconds * 2),
                heartbeat_timeout=MODEL_HEARTBEAT,
                retry_policy=RetryPolicy(maximum_attempts=5),
            ),
            model_provider=provider,
        )
        config = base.config()
        config["plugins"] = [plugin]
        client = Client(**config)
        queue = agent_task_queue(settings.temporal.task_queue)
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[WeatherAgentWorkflow],
            activities=[get_weather],
            graceful_shutdown_timeout=timedelta(seconds=settings.worker.shutdown_grace_seconds),
        )
        async with worker:
            print(f"openai-agents worker: ready on task queue {queue}", flush=True)
            await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace-ms", type=float, default=30, help="offline model: ms per word")
    args = parser.parse_args()
    asyncio.run(serve(Settings(), args.pace_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
