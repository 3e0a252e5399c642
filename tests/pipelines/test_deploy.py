"""Pipelines deploy with the workers that serve them.

A built-in worker and a worker with a user's activities and pipelines folder
share one deployment; a gateway with no folder lists and starts both kinds of
pipeline, each run's steps reach only a worker that registered them, and a
bad folder stops worker and gateway at start. Real Temporal, Kafka, Redis,
real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import StackHandle
from tests.pipelines.userland import BAD_SPEC, write_userland
from tests.processes import ChildProcess, module_argv
from tests.services import GatewayProcess, finished_run, private_settings, service_env
from tests.support import free_port
from tests.topics import private_topics
from workflows.registry import dedicated_queue

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RUNS_EACH = 6
# The console script, as a user runs it: its sys.path starts at the venv's
# bin folder, not the current directory.
TIDINGS = str(Path(sys.executable).parent / "tidings")


@dataclass
class Deployment:
    env: dict[str, str]
    key: str
    base_queue: str
    gateway: GatewayProcess
    builtin_worker: ChildProcess
    custom_worker: ChildProcess

    @property
    def url(self) -> str:
        return self.gateway.url

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )


def _says_ready(worker: ChildProcess) -> Any:
    async def ready() -> bool:
        return "ready on task queue" in worker.log.read_text(errors="replace")

    return ready


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment(
    stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    settings = private_settings(stack, "pipes", partitions=2)
    suffix = uuid.uuid4().hex[:8]
    tenant, key = f"pipes{suffix}", f"pipes-key-{suffix}"
    logs = tmp_path_factory.mktemp("pipelines")
    userland, folder = write_userland(tmp_path_factory.mktemp("userland"))
    port = free_port()
    env = service_env(settings, {key: tenant}, port)
    env.pop("PYTHONPATH", None)
    builtin = ChildProcess(
        "builtin worker", module_argv("cli", "worker"), env, logs / "builtin.log"
    )
    custom = ChildProcess(
        "custom worker",
        [TIDINGS, "worker", "--activities", "mysteps:activities"],
        {**env, "TIDINGS_WORKER_PIPELINES_DIR": str(folder)},
        logs / "custom.log",
        cwd=userland,
    )
    # No pipelines folder: it learns `greet` from the custom worker's announcement.
    gateway = GatewayProcess(
        ChildProcess("gateway", module_argv("cli", "gateway"), env, logs / "gw.log"), port
    )
    async with private_topics(settings, tenant):
        try:
            await asyncio.gather(
                builtin.start(_says_ready(builtin), 60), custom.start(_says_ready(custom), 60)
            )
            await gateway.start()
            yield Deployment(env, key, settings.temporal.task_queue, gateway, builtin, custom)
        finally:
            gateway.stop()
            custom.stop()
            builtin.stop()


async def test_a_gateway_without_a_folder_lists_what_the_workers_announced(
    deployment: Deployment,
) -> None:
    async with deployment.http() as http:
        response = await http.get("/v1/pipelines")
    assert response.status_code == 200, response.text
    listed = {item["name"]: item for item in response.json()["pipelines"]}
    assert {"greet", "research"} <= set(listed)
    greet = listed["greet"]
    assert greet["task_queue"] == dedicated_queue(deployment.base_queue, "greet")
    assert greet["announced"] is True
    assert [step["name"] for step in greet["steps"]] == ["hello"]
    assert greet["steps"][0]["activity"] == "greet.hello"
    assert greet["input"]["name"]["type"] == "string"
    assert greet["input"]["name"]["max_length"] == 100
    assert len(greet["version"]) == 16
    assert listed["research"]["task_queue"] == deployment.base_queue
    assert [s["name"] for s in listed["research"]["steps"]][:2] == ["plan", "search"]


async def test_custom_and_builtin_runs_all_complete_on_the_workers_that_registered_them(
    deployment: Deployment,
) -> None:
    async with deployment.http() as http:

        async def start(pipeline: str, input_: dict[str, Any]) -> str:
            response = await http.post("/v1/runs", json={"pipeline": pipeline, "input": input_})
            assert response.status_code == 201, response.text
            run_id: str = response.json()["run_id"]
            return run_id

        greets = [start("greet", {"name": f"n{i}"}) for i in range(RUNS_EACH)]
        researches = [start("research", {"question": f"Why resume {i}?"}) for i in range(RUNS_EACH)]
        greet_ids = await asyncio.gather(*greets)
        research_ids = await asyncio.gather(*researches)
    finished = await asyncio.gather(
        *(finished_run(deployment.url, deployment.key, run, 120) for run in greet_ids),
        *(finished_run(deployment.url, deployment.key, run, 120) for run in research_ids),
    )
    assert [run["status"] for run in finished] == ["COMPLETED"] * (2 * RUNS_EACH), finished
    assert deployment.custom_worker.process is not None
    custom_pid = deployment.custom_worker.process.pid
    for index, run in enumerate(finished[:RUNS_EACH]):
        output = run["result"]
        assert output["greeting"] == f"hello n{index}"
        assert output["pid"] == custom_pid  # never the built-in worker, which lacks greet.hello


async def test_tidings_pipelines_prints_names_steps_and_input(deployment: Deployment) -> None:
    env = {
        **deployment.env,
        "TIDINGS_GATEWAY_URL": deployment.url,
        "TIDINGS_API_KEY": deployment.key,
    }
    done = await asyncio.to_thread(
        subprocess.run, [TIDINGS, "pipelines"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    queue = dedicated_queue(deployment.base_queue, "greet")
    assert f"task queue {queue})" in done.stdout
    assert "  steps: hello\n" in done.stdout
    assert (
        "  input.name: string, required, min length 1, max length 100: who to greet" in done.stdout
    )
    assert "  steps: plan -> search -> draft -> review -> final" in done.stdout
    as_json = await asyncio.to_thread(
        subprocess.run,
        [TIDINGS, "pipelines", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {p["name"] for p in json.loads(as_json.stdout)["pipelines"]} >= {"greet", "research"}


async def test_an_unknown_pipeline_is_a_400_naming_the_known_ones(deployment: Deployment) -> None:
    async with deployment.http() as http:
        response = await http.post("/v1/runs", json={"pipeline": "nope", "input": {}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_pipeline"
    assert "greet" in error["message"] and "research" in error["message"]


async def test_readyz_waits_for_the_registry(deployment: Deployment, tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(f"{deployment.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["pipelines"] == "ok"

    # A gateway whose Redis does not answer cannot know what the workers serve.
    port = free_port()
    env = {**deployment.env, "TIDINGS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    env["TIDINGS_GATEWAY_PORT"] = str(port)
    blind = ChildProcess("blind gateway", module_argv("cli", "gateway"), env, tmp_path / "g")
    url = f"http://127.0.0.1:{port}"

    async def serving() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{url}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await blind.start(serving, 30)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {deployment.key}"}, timeout=20
        ) as http:
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["pipelines"] == "registry not read yet"
            refused = await http.post(
                "/v1/runs", json={"pipeline": "greet", "input": {"name": "x"}}
            )
            assert refused.status_code == 503, refused.text
            assert "pipelines registry" in refused.json()["error"]["message"]
    finally:
        blind.stop()


@pytest.mark.parametrize("command", ["worker", "gateway"])
async def test_a_bad_folder_stops_the_process_naming_variable_file_and_field(
    tmp_path: Path, command: str
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "broken.yaml").write_text(BAD_SPEC)
    env = {
        **os.environ,
        "TIDINGS_ENV": "local",
        "TIDINGS_WORKER_PIPELINES_DIR": str(folder),
        # Nothing listens here: the process must stop before connecting anything.
        "TIDINGS_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "TIDINGS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "TIDINGS_GATEWAY_PORT": str(free_port()),
    }
    done = await asyncio.to_thread(
        subprocess.run, [TIDINGS, command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "TIDINGS_WORKER_PIPELINES_DIR" in done.stderr
    assert f"{folder / 'broken.yaml'}: invalid pipeline spec" in done.stderr
    assert "steps[0].retry.max_attempts" in done.stderr
    assert "Traceback" not in done.stderr
