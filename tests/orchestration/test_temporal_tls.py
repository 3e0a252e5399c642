"""Temporal over TLS with a client certificate (mTLS), as Temporal Cloud or a
secured cluster serves it.

The dev server has no TLS flags, so nginx (Debian's package) terminates TLS in
front of it and proxies gRPC (``grpc_pass``), refusing clients without a
certificate from the test's CA (``ssl_verify_client on``). A ``tidings worker``
and a ``tidings gateway`` connect through it with ``TIDINGS_TEMPORAL_TLS_*``, a
run completes, and ``tidings replay`` (the CLI's Temporal command) reads its
history through it. Without a client certificate, and with TLS pointed at the
plaintext port, processes stop at start with a message naming the variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.install import ensure_apt
from infra.ports import free_port
from tests.conftest import StackHandle
from tests.processes import stop_process
from tests.reliability.deploy import Deployment, Secrets, deployment_env, write_pipelines
from tests.tlsfiles import Pair, TestCA
from tidings.errors import ConfigError, Unavailable
from tidings.settings import TemporalSettings
from tidings.temporal_connect import connect_temporal

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    client_max_body_size 0;
    location / {{
      grpc_pass grpc://{upstream};
      # Workers long-poll for tasks for up to about a minute.
      grpc_read_timeout 300s;
      grpc_send_timeout 300s;
    }}
  }}
}}
"""


@dataclass
class TlsProxy:
    address: str
    ca: Path
    client: Pair

    def settings(self, **overrides: object) -> TemporalSettings:
        values: dict[str, object] = {
            "address": self.address,
            "tls_ca_file": self.ca,
            "tls_cert_file": self.client.cert,
            "tls_key_file": self.client.key,
            **overrides,
        }
        return TemporalSettings(**values)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {
            "TIDINGS_TEMPORAL_ADDRESS": self.address,
            "TIDINGS_TEMPORAL_TLS_CA_FILE": str(self.ca),
            "TIDINGS_TEMPORAL_TLS_CERT_FILE": str(self.client.cert),
            "TIDINGS_TEMPORAL_TLS_KEY_FILE": str(self.client.key),
        }


@pytest.fixture(scope="module")
def tls_proxy(stack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsProxy]:
    nginx = ensure_apt("nginx", "nginx-light", lambda line: print(line, file=sys.stderr))
    folder = tmp_path_factory.mktemp("temporal-tls")
    ca = TestCA(folder / "pki")
    server = ca.issue("temporal.test", server=True)
    client = ca.issue("tidings-worker", server=False)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            folder=folder,
            port=port,
            cert=server.cert,
            key=server.key,
            ca=ca.cert,
            upstream=stack.endpoints.temporal_address,
        )
    )
    log = (folder / "nginx.out").open("wb")
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while "start worker process" not in _read(folder / "error.log"):
            assert proc.poll() is None, f"nginx exited: {_read(folder / 'error.log')[-500:]}"
            assert time.monotonic() < deadline, "nginx did not start within 15 s"
            time.sleep(0.05)
        yield TlsProxy(f"127.0.0.1:{port}", ca.cert, client)
    finally:
        stop_process(proc)
        log.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_worker_gateway_and_cli_run_through_mtls(
    stack: StackHandle, tls_proxy: TlsProxy, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    (tmp_path / "logs").mkdir()
    secrets = Secrets.fresh()
    env = deployment_env(
        temporal=tls_proxy.address,
        kafka=stack.endpoints.kafka_bootstrap,
        redis=stack.endpoints.redis_url,
        prefix=f"tls{tag}",
        task_queue=f"tls-{tag}",
        pipelines=write_pipelines(tmp_path / "pipelines"),
        keys={secrets.api_key: f"tls{tag}"},
        secrets=secrets,
        max_concurrent_runs=10,
    )
    env.update(tls_proxy.env())
    deployment = Deployment(f"tls{tag}", "", "", f"tls{tag}", f"tls-{tag}", secrets, tmp_path, env)
    temporal = await connect_temporal(tls_proxy.settings())
    try:
        deployment.workers = [deployment.new_worker()]
        deployment.gateways = [deployment.new_gateway()]
        for proc in [*deployment.workers, *deployment.gateways]:
            proc.wait_ready()
        async with httpx.AsyncClient(
            base_url=deployment.urls[0],
            headers={"Authorization": f"Bearer {secrets.api_key}"},
            timeout=30,
        ) as http:
            started = await http.post(
                "/v1/runs", json={"pipeline": "research", "input": {"question": "Why mTLS?"}}
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            # Started by the gateway, run by the worker: both through the proxy.
            result = await temporal.get_workflow_handle(run_id).result()
            assert result
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        deployment.stop()
    replay = _cli(["replay", run_id], env)
    assert replay.returncode == 0, replay.stderr
    assert "Temporal at" not in replay.stderr


async def test_no_client_certificate_is_refused_clearly(tls_proxy: TlsProxy) -> None:
    without = tls_proxy.settings(tls_cert_file=None, tls_key_file=None)
    with pytest.raises((ConfigError, Unavailable)) as raised:
        await connect_temporal(without)
    message = str(raised.value)
    assert tls_proxy.address in message
    assert "TIDINGS_TEMPORAL_TLS_CERT_FILE" in message


async def test_untrusted_server_certificate_is_refused_clearly(
    tls_proxy: TlsProxy, tmp_path: Path
) -> None:
    other = TestCA(tmp_path, "another CA")
    with pytest.raises(ConfigError) as raised:
        await connect_temporal(tls_proxy.settings(tls_ca_file=other.cert))
    assert "TIDINGS_TEMPORAL_TLS_CA_FILE" in str(raised.value)


def test_api_key_at_a_plaintext_port_stops_the_gateway(stack: StackHandle) -> None:
    # The dev server's own port speaks plaintext gRPC: an API key turns TLS on.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
        "TIDINGS_TEMPORAL_ADDRESS": stack.endpoints.temporal_address,
        "TIDINGS_TEMPORAL_API_KEY": "not-a-real-key-7f3a9c",
        "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": stack.endpoints.kafka_bootstrap,
        "TIDINGS_REDIS_URL": stack.endpoints.redis_url,
    }
    gateway = _cli(["gateway", "--port", str(free_port())], env)
    assert gateway.returncode == 2, gateway.stderr
    assert "refused TLS" in gateway.stderr
    assert "TIDINGS_TEMPORAL_API_KEY" in gateway.stderr
    assert "not-a-real-key-7f3a9c" not in gateway.stderr
