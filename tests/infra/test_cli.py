"""``tidings up | down | status`` on a second private stack, through the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.layout import Layout
from infra.ports import exchange, in_use
from infra.process import ProcessRecord, proc_start_time
from infra.settings import private_stack_settings
from tests.conftest import StackHandle
from tests.pipelines.userland import BAD_SPEC, write_userland
from tests.support import wait_until

pytestmark = pytest.mark.integration

TIDINGS = str(Path(sys.executable).parent / "tidings")


@dataclass
class Cli:
    env: dict[str, str]
    state_dir: Path
    ports: dict[str, int]

    def __call__(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TIDINGS, *args],
            cwd=cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )

    def pids(self) -> dict[str, int]:
        layout = Layout(self.state_dir)
        records = (ProcessRecord.load(layout.pid_file(n)) for n in layout.recorded_services())
        return {r.service: r.pid for r in records if r is not None}

    def nothing_listens(self) -> bool:
        return not any(in_use("127.0.0.1", port) for port in self.ports.values())


def make_cli(state_dir: Path) -> Cli:
    settings = private_stack_settings(state_dir)
    ports = {
        "TEMPORAL_PORT": settings.temporal_port,
        "TEMPORAL_UI_PORT": settings.temporal_ui_port,
        "KAFKA_PORT": settings.kafka_port,
        "KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
        "REDIS_PORT": settings.redis_port,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_STACK_")}
    env |= {f"TIDINGS_STACK_{name}": str(port) for name, port in ports.items()}
    env |= {
        "TIDINGS_STACK_STATE_DIR": str(state_dir),
        "TIDINGS_STACK_GATEWAY_PORT": str(settings.gateway_port),
        "TIDINGS_STACK_GATEWAYS": "0",
        "TIDINGS_STACK_WORKERS": "0",
        "TIDINGS_STACK_KAFKA_HEAP": settings.kafka_heap,
    }
    if "TIDINGS_STACK_CACHE_DIR" in os.environ:
        env["TIDINGS_STACK_CACHE_DIR"] = os.environ["TIDINGS_STACK_CACHE_DIR"]
    return Cli(env, state_dir, ports)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    made = make_cli(tmp_path / "state")
    yield made
    made("down")  # whatever a failed test left behind


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """`up` fails with exit 2 and exactly one line on stderr."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tidings: ")
    return lines[0]


def test_up_is_idempotent_and_down_stops_only_its_own(cli: Cli, stack: StackHandle) -> None:
    Layout(cli.state_dir).claim()
    bystander = subprocess.Popen(["sleep", "60"])
    start = proc_start_time(bystander.pid)
    assert start is not None
    record = ProcessRecord("redis", bystander.pid, start, ("redis-server",), "redis.log")
    record.dump(Layout(cli.state_dir).pid_file("redis"))  # a PID recycled by a bystander

    first = cli("up")
    assert first.returncode == 0, first.stderr
    assert f"redis: stale PID file ignored (pid {bystander.pid} now belongs" in first.stderr
    assert bystander.poll() is None
    bystander.kill()
    bystander.wait()
    assert f"127.0.0.1:{cli.ports['KAFKA_PORT']}" in first.stdout
    assert "dev-key-demo" in first.stdout
    pids = cli.pids()
    assert set(pids) == {"temporal", "kafka", "redis"}
    assert pids["redis"] != bystander.pid

    # Keys of the operator's own replace the default: `up` names those, masked.
    again = cli("up", TIDINGS_TENANTS_API_KEYS='{"acme-own-key-0042": "acme"}')
    assert again.returncode == 0, again.stderr
    assert cli.pids() == pids  # healthy services were left alone
    assert "dev-key-demo" not in again.stdout and "acme-own-key-0042" not in again.stdout
    assert "api key      acme… (17 characters)   (tenant acme, from TIDINGS_TENANTS_API_KEYS)" in (
        again.stdout.splitlines()
    )

    status = cli("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 3

    down = cli("down")
    assert down.returncode == 0, down.stderr
    wait_until(lambda: all(proc_start_time(p) is None for p in pids.values()), 30, "all exited")
    assert cli.nothing_listens()
    assert cli.pids() == {}
    # The session's own stack was not touched.
    redis_port = int(stack.endpoints.redis_url.rsplit(":", 1)[1].split("/")[0])
    assert exchange("127.0.0.1", redis_port, b"PING\r\n").startswith(b"+PONG")

    stopped = cli("status")
    assert stopped.returncode == 1
    assert stopped.stdout.count("stopped") == 3

    # A service that dies while starting takes back what this `up` started, and says why.
    manifest = cli.state_dir / "data" / "redis" / "appendonlydir" / "appendonly.aof.manifest"
    manifest.write_text("this is not a manifest\n")
    line = one_line(cli("up"))
    assert "redis exited while starting" in line
    assert cli.pids() == {}
    wait_until(cli.nothing_listens, 30, "nothing of the failed up still listens")


def test_a_bad_pipelines_folder_stops_up_before_starting_anything(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BAD_SPEC)
    line = one_line(cli("up", "--pipelines", str(tmp_path)))
    assert "TIDINGS_WORKER_PIPELINES_DIR" in line and "broken.yaml" in line
    assert "steps[0].retry.max_attempts" in line
    assert cli.pids() == {}


def test_port_in_use_stops_before_starting_anything(cli: Cli) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cli.ports["REDIS_PORT"]))
        squatter.listen()
        line = one_line(cli("up"))
    assert f"port {cli.ports['REDIS_PORT']} (TIDINGS_STACK_REDIS_PORT)" in line
    assert cli.pids() == {}
    assert cli.nothing_listens()


def test_stale_pid_file_is_never_signalled(cli: Cli) -> None:
    Layout(cli.state_dir).claim()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        start = proc_start_time(bystander.pid)
        assert start is not None
        # Same PID, other start time: the PID was recycled by an unrelated process.
        record = ProcessRecord("redis", bystander.pid, start + 1, ("redis-server",), "x.log")
        record.dump(Layout(cli.state_dir).pid_file("redis"))
        status = cli("status")
        assert "stale pid file" in status.stdout
        down = cli("down")
        assert down.returncode == 0
        assert "not signalled" in down.stderr
        assert bystander.poll() is None
        assert cli.pids() == {}
    finally:
        bystander.kill()
        bystander.wait()


def test_foreign_state_dir_is_refused(cli: Cli) -> None:
    cli.state_dir.mkdir()
    (cli.state_dir / "thesis.tex").write_text("not ours")
    line = one_line(cli("up"))
    assert "did not create" in line and "TIDINGS_STACK_STATE_DIR" in line
    assert sorted(p.name for p in cli.state_dir.iterdir()) == ["thesis.tex"]
    assert cli.nothing_listens()


@pytest.mark.parametrize("meta", [b"cluster.id=SomeoneElsesCluster\n", b"\xff\xfe\x00garbage"])
def test_foreign_kafka_data_is_refused(cli: Cli, meta: bytes) -> None:
    Layout(cli.state_dir).claim()
    kafka = cli.state_dir / "data" / "kafka"
    (kafka / "logs").mkdir(parents=True)
    (kafka / "cluster-id").write_text("OurOwnClusterIdAbcdefg")
    (kafka / "logs" / "meta.properties").write_bytes(meta)
    line = one_line(cli("up"))
    assert str(kafka) in line
    assert cli.pids() == {}
    assert cli.nothing_listens()
    assert (kafka / "logs" / "meta.properties").read_bytes() == meta  # never reformatted


def test_missing_jdk_and_maven_are_named_with_a_fix(cli: Cli, tmp_path: Path) -> None:
    line = one_line(cli("up", PATH=str(tmp_path)))
    assert "java not found" in line and "apt-get install" in line
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to("/usr/bin/java")
    line = one_line(cli("deps", PATH=str(only_java), TIDINGS_STACK_CACHE_DIR=str(tmp_path / "c")))
    assert "mvn not found" in line and "maven" in line
    assert cli.nothing_listens()


def test_unreachable_maven_central_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".m2" / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf>"
        "<url>http://127.0.0.1:9/</url></mirror></mirrors></settings>"
    )
    result = cli(
        "up",
        TIDINGS_STACK_CACHE_DIR=str(tmp_path / "cache"),
        MAVEN_OPTS=f"-Duser.home={home}",
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2
    assert lines[-1].startswith("tidings: Maven could not fetch Kafka")
    assert "retry `tidings deps`" in lines[-1]
    assert not (tmp_path / "cache" / "kafka-4.1.1" / ".complete").exists()
    assert cli.pids() == {}
    assert cli.nothing_listens()


def test_deps_reports_every_dependency(cli: Cli) -> None:
    result = cli("deps")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["java", "maven", "temporal", "redis", "kafka"]


@pytest.mark.e2e
def test_up_wires_a_worker_and_gateways_to_the_stack(cli: Cli, tmp_path: Path) -> None:
    gateway_port = int(cli.env["TIDINGS_STACK_GATEWAY_PORT"])
    # A user's own pipeline, from its own folder: no PYTHONPATH, no folder for the gateways.
    userland, _ = write_userland(tmp_path / "userland")
    env = {"PYTHONPATH": ""}
    up = cli(
        "up",
        "--gateways",
        "2",
        "--gateway-processes",
        "2",
        "--pipelines",
        "pipelines",
        "--activities",
        "mysteps:activities",
        cwd=userland,
        TIDINGS_STACK_WORKERS="1",
        **env,
    )
    assert up.returncode == 0, up.stderr
    urls = [f"http://127.0.0.1:{gateway_port + i}" for i in range(2)]
    assert all(url in up.stdout for url in urls)
    assert set(cli.pids()) == {
        "temporal",
        "kafka",
        "redis",
        "worker-1",
        *(f"gateway-{gateway_port + i}" for i in range(2)),
    }
    for url in urls:
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    # --gateway-processes 2: each gateway is a supervisor of two serving processes.
    served = {
        name: _children(pid) for name, pid in cli.pids().items() if name.startswith("gateway-")
    }
    assert all(len(children) == 2 for children in served.values()), served
    auth = {"Authorization": "Bearer dev-key-demo"}

    def listed() -> bool:
        found = httpx.get(f"{urls[1]}/v1/pipelines", headers=auth, timeout=5).json()
        return "greet" in {pipeline["name"] for pipeline in found["pipelines"]}

    wait_until(listed, 30, "the worker to announce greet", interval=0.2)
    started = httpx.post(
        f"{urls[0]}/v1/runs",
        json={"pipeline": "greet", "input": {"name": "Ada"}},
        headers=auth,
        timeout=30,
    )
    assert started.status_code == 201, started.text
    run = f"{urls[0]}/v1/runs/{started.json()['run_id']}"

    def completed() -> bool:
        status = httpx.get(run, headers=auth, timeout=5).json()["status"]
        assert status in ("RUNNING", "COMPLETED"), status
        return bool(status == "COMPLETED")

    wait_until(completed, 60, "the greet run to complete", interval=0.2)
    assert httpx.get(run, headers=auth, timeout=5).json()["result"]["greeting"] == "hello Ada"
    status = cli("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("healthy") == 6
    pids = [*cli.pids().values(), *(child for c in served.values() for child in c)]
    assert cli("down").returncode == 0
    wait_until(lambda: all(proc_start_time(p) is None for p in pids), 30, "all exited")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
