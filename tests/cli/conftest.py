"""One real worker and one real gateway (child processes) for the CLI tests,
on a private tenant, key, topic prefix and task queue of the session stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.cli.harness import PARTITIONS, CliWorld, cli_world
from tests.conftest import StackHandle
from tests.services import private_settings


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def world(
    stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CliWorld]:
    settings = private_settings(stack, "cli", partitions=PARTITIONS)
    async with cli_world(settings, tmp_path_factory.mktemp("cli")) as running:
        yield running
