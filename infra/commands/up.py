"""``tidings up``: start the local stack, a worker and gateways; optionally run a demo.

Returns once everything is healthy and leaves it running in the background.
Running it again is harmless: healthy services that an earlier ``up`` started are
left alone and only what is missing starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from infra.commands.common import say, stack_settings
from infra.services.apps import UserCode, tidings_executable
from infra.services.sentinel import MASTER_NAME
from infra.stack import Stack
from tidings.settings import DEV_API_KEYS, TemporalSettings, TenantSettings, load

KEYS_VARIABLE = "TIDINGS_TENANTS_API_KEYS"
# Characters of a configured key shown; the rest is masked.
KEY_PREFIX = 4
DEMO_QUESTION = "Why do resumable event streams need an acknowledged cursor?"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateways",
        type=int,
        metavar="N",
        help="gateway replicas on consecutive ports from TIDINGS_STACK_GATEWAY_PORT (default 1)",
    )
    parser.add_argument(
        "--gateway-processes",
        type=int,
        metavar="N",
        help="processes per gateway, sharing its port: one per core "
        "(TIDINGS_STACK_GATEWAY_PROCESSES, default 1)",
    )
    parser.add_argument(
        "--redis-sentinel",
        action="store_true",
        default=None,
        help="Redis as a primary, a replica and three Sentinels (TIDINGS_STACK_REDIS_SENTINEL); "
        "the apps find the primary through the Sentinels",
    )
    parser.add_argument(
        "--kafka-brokers",
        type=int,
        metavar="N",
        help="a KRaft cluster of N Kafka nodes on every other port from TIDINGS_STACK_KAFKA_PORT; "
        "3 keeps three copies of each topic, two in sync (default 1)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="then start a `research` run and an `agent` run and watch each live",
    )
    parser.add_argument(
        "--pipelines",
        type=Path,
        metavar="DIR",
        help="the workers also serve the pipeline specs in DIR (TIDINGS_WORKER_PIPELINES_DIR)",
    )
    parser.add_argument(
        "--activities",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="the workers register these step activities (repeatable; MODULE imports "
        "from the current directory)",
    )


def user_code(args: argparse.Namespace) -> UserCode:
    """``--pipelines`` / ``--activities`` for the workers; a bad spec stops here,
    naming the file and field, before anything starts."""
    pipelines = args.pipelines.resolve() if args.pipelines is not None else None
    if pipelines is not None:
        # Imported here: only this option needs the orchestration plane.
        from workflows.registry import load_dir

        load_dir(pipelines)
    activities = tuple(args.activities)
    return UserCode(pipelines, activities, Path.cwd() if activities else None)


def main(args: argparse.Namespace) -> int:
    settings = stack_settings(
        gateways=args.gateways,
        gateway_processes=args.gateway_processes,
        redis_sentinel=args.redis_sentinel,
        kafka_brokers=args.kafka_brokers,
    )
    code = user_code(args)
    # The keys the gateways will use: they get this process's environment.
    keys = load(TenantSettings).api_keys
    stack = Stack(settings, task_queue=load(TemporalSettings).task_queue, code=code)
    began = time.monotonic()
    stack.up(say)
    say(f"local stack is up ({time.monotonic() - began:.1f}s); state in {settings.state_dir}")
    for gateway in stack.gateways:
        print(f"gateway      {gateway.url()}")
    print(f"temporal     {stack.temporal.address}   (UI {stack.temporal.ui_url})")
    print(f"kafka        {stack.kafka_bootstrap}")
    print(f"redis        {stack.redis.redis_url}")
    if stack.sentinels:
        print(f"sentinels    {stack.wiring.redis_sentinels}   (master {MASTER_NAME})")
    for line in key_lines(keys, configured=KEYS_VARIABLE in os.environ):
        print(line)
    print("stop with    tidings down")
    if args.demo:
        return _demo(stack, demo_key(keys, os.environ.get("TIDINGS_API_KEY")))
    return 0


def key_lines(keys: Mapping[str, str], *, configured: bool) -> list[str]:
    """What ``up`` says about API keys: those in force, and where they come from.

    The development key is public (README) and printed whole; a configured
    key is a secret, shown only by a short prefix so the operator can tell
    which of theirs it is.
    """
    if not configured:
        return [
            f"api key      {key}   (tenant {tenant}, the local default; "
            f"{KEYS_VARIABLE} replaces it)"
            for key, tenant in keys.items()
        ]
    return [
        f"api key      {_masked(key)}   (tenant {tenant}, from {KEYS_VARIABLE})"
        for key, tenant in keys.items()
    ]


def _masked(key: str) -> str:
    if key in DEV_API_KEYS:
        return key
    return key[:KEY_PREFIX] + "…" + f" ({len(key)} characters)"


def demo_key(keys: Mapping[str, str], preferred: str | None) -> str:
    """The key the demo run uses: $TIDINGS_API_KEY if the gateways accept it, else the first."""
    if preferred is not None and preferred in keys:
        return preferred
    return next(iter(keys))


# The declarative research pipeline, then the Pydantic AI agent (tool calls,
# thinking) on the same question, so the two streams can be compared.
DEMO_PIPELINES = ("research", "agent")


def _demo(stack: Stack, api_key: str) -> int:
    run_input = json.dumps({"question": DEMO_QUESTION})
    for pipeline in DEMO_PIPELINES:
        code = _demo_run(stack, api_key, pipeline, run_input)
        if code != 0:
            return code
    return 0


def _demo_run(stack: Stack, api_key: str, pipeline: str, run_input: str) -> int:
    argv = [tidings_executable(), "run", pipeline, "--input", run_input, "--watch"]
    if not stack.gateways:
        say("the demo needs a gateway; with one, try:")
        print("  " + " ".join(argv[:4]) + f" '{run_input}' --watch")
        return 0
    first = stack.gateways[0]
    env = {
        **stack.wiring.env(),
        "TIDINGS_GATEWAY_URL": first.url(),
        "TIDINGS_GATEWAY_PUBLIC_URL": first.url(),
        "TIDINGS_GATEWAY_PORT": str(first.port),
        "TIDINGS_API_KEY": api_key,
    }
    say(f"demo: {' '.join(argv[:3])} against {first.url()}")
    return subprocess.run(argv, env=env, check=False).returncode
