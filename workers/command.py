"""``tidings worker``: runs the pipelines' workflows and activities until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from temporalio.client import Client

from activities.metrics import WorkerMetrics
from tidings.observability import setup_logging, setup_tracing
from tidings.preflight import check_connections
from tidings.settings import Settings
from workers.announcer import Announcer
from workers.build import (
    build_workers,
    connect_temporal,
    default_activities,
    load_factory,
    open_clients,
)
from workers.completions import CompletionConsumer
from workers.metrics_server import MetricsServer, serve_metrics
from workers.run_close import RunCloseWatcher
from workflows.registry import PipelineRegistry

log = logging.getLogger("tidings.worker")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-queue", help="overrides TIDINGS_TEMPORAL_TASK_QUEUE")
    parser.add_argument(
        "--activities",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="register more step activities: FACTORY(clients, settings) returns an object "
        "whose @step methods become activities (repeatable)",
    )


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    setup_logging(settings)
    setup_tracing(settings.tracing, "tidings-worker")
    # Registry errors name the file and field; fail before connecting anything.
    registry = PipelineRegistry.with_builtins(settings.worker.pipelines_dir)
    check_connections(settings)
    asyncio.run(serve(settings, registry, args.task_queue, list(args.activities)))
    return 0


async def serve(
    settings: Settings, registry: PipelineRegistry, task_queue: str | None, factories: list[str]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics = WorkerMetrics()
    exporter: MetricsServer | None = None
    runtime = None
    if settings.worker.metrics_port:
        exporter = serve_metrics(
            settings.worker.metrics_host, settings.worker.metrics_port, metrics.registry
        )
        runtime = exporter.runtime
    try:
        temporal = await connect_temporal(settings, runtime)
        await _run(settings, registry, task_queue, factories, temporal, metrics, stop)
    finally:
        if exporter is not None:
            exporter.close()


async def _run(
    settings: Settings,
    registry: PipelineRegistry,
    task_queue: str | None,
    factories: list[str],
    temporal: Client,
    metrics: WorkerMetrics,
    stop: asyncio.Event,
) -> None:
    async with open_clients(settings, temporal, metrics=metrics) as clients:
        objects = default_activities(clients, settings)
        objects += [load_factory(path)(clients, settings) for path in factories]
        workers = build_workers(clients, settings, objects, registry, task_queue=task_queue)
        base = workers[0].task_queue
        assert clients.redis is not None
        announcer = Announcer(
            clients.redis,
            settings.temporal.namespace,
            base,
            registry,
            settings.worker.announce_seconds,
        )
        consumer = CompletionConsumer(clients.temporal, settings.kafka, clients.emitter)
        worker_tasks = [asyncio.create_task(worker.run()) for worker in workers]
        consumer_task = asyncio.create_task(consumer.run())
        # Announced after the workers start (a run started in between just
        # waits in its queue for their first poll); refreshed in the background.
        announced = await announcer.announce_once()
        announcer_task = asyncio.create_task(announcer.run(announced))
        queues = {
            name: queue for queue, names in registry.task_queues(base).items() for name in names
        }
        watching: list[asyncio.Task[None]] = []
        if settings.worker.run_close_poll_seconds > 0:
            # The workers that run a run's workflow own its end.
            watcher = RunCloseWatcher(
                clients.temporal,
                clients.emitter,
                settings.kafka,
                [worker.task_queue for worker in workers],
                redis=clients.redis,
                poll_seconds=settings.worker.run_close_poll_seconds,
                catch_up_seconds=settings.worker.run_close_catch_up_seconds,
            )
            watching.append(asyncio.create_task(watcher.run()))
        log.info(
            "worker ready: task queue %s, pipelines %s",
            base,
            ", ".join(f"{name} ({queue})" for name, queue in sorted(queues.items())),
        )
        print(f"tidings worker: ready on task queue {base}", flush=True)
        for name, queue in sorted(queues.items()):
            if queue != base:
                print(f"tidings worker: pipeline {name} on task queue {queue}", flush=True)
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {*worker_tasks, consumer_task, *watching, stopped}, return_when=asyncio.FIRST_COMPLETED
        )
        log.info("shutting down (grace %ss)", settings.worker.shutdown_grace_seconds)
        for background in (consumer_task, announcer_task, *watching):
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        # Lets running activities finish within the grace period, then cancels them.
        await asyncio.gather(
            *(
                worker.shutdown()
                for worker, task in zip(workers, worker_tasks, strict=True)
                if not task.done()
            )
        )
        stopped.cancel()
        for task in done:
            if task is not stopped and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
