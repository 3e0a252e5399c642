"""The reliability suite's deployment: two ``tidings worker`` and two
``tidings gateway`` processes on the session stack (see ``deploy.py``).

Every test in this folder is marked ``reliability`` (and ``integration`` when
it uses the stack, else ``unit``).
Tests that hurt the deployment call ``rel.deployment.ensure_healthy()`` on
the way out, so the next one starts from two of each again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.reliability.deploy import Deployment, Secrets, deployment_env, write_pipelines
from tests.topics import create_topics, delete_prefixed
from tidings.topics import events_topic

if TYPE_CHECKING:
    from tests.conftest import StackHandle


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
            uses_stack = "stack" in getattr(item, "fixturenames", ())
            item.add_marker(pytest.mark.integration if uses_stack else pytest.mark.unit)


@dataclass
class Rel:
    stack: StackHandle
    deployment: Deployment
    temporal: Client

    @property
    def secrets(self) -> Secrets:
        return self.deployment.secrets

    @property
    def kafka(self) -> str:
        return self.stack.endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def rel_deployment(
    stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("reliability")
    (folder / "logs").mkdir()
    secrets = Secrets.fresh()
    tenant, abuse, other = f"rel{tag}", f"abuse{tag}", f"other{tag}"
    keys = {secrets.api_key: tenant, secrets.abuse_key: abuse, secrets.other_key: other}
    prefix = f"rel{tag}"
    env = deployment_env(
        temporal=stack.endpoints.temporal_address,
        kafka=stack.endpoints.kafka_bootstrap,
        redis=stack.endpoints.redis_url,
        prefix=prefix,
        task_queue=f"rel-{tag}",
        pipelines=write_pipelines(folder / "pipelines"),
        keys=keys,
        secrets=secrets,
        max_concurrent_runs=1000,
    )
    deployment = Deployment(tenant, abuse, other, prefix, f"rel-{tag}", secrets, folder, env)
    asyncio.run(
        create_topics(
            stack.endpoints.kafka_bootstrap,
            [events_topic(prefix, t) for t in (tenant, abuse, other)],
        )
    )
    try:
        deployment.workers = [deployment.new_worker(), deployment.new_worker()]
        deployment.gateways = [deployment.new_gateway(), deployment.new_gateway()]
        for proc in [*deployment.workers, *deployment.gateways]:
            proc.wait_ready()
        yield deployment
    finally:
        deployment.stop()
        asyncio.run(delete_prefixed(stack.endpoints.kafka_bootstrap, prefix))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def rel(stack: StackHandle, rel_deployment: Deployment) -> AsyncIterator[Rel]:
    temporal = await Client.connect(stack.endpoints.temporal_address)
    yield Rel(stack, rel_deployment, temporal)
