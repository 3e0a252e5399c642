"""Operations endpoints (healthz, readyz, metrics, OpenAPI) and the seam to the stream."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from pydantic import SecretStr

from gateway.app import create_app
from tests.gateway_rest.helpers import ACME_KEY, DEMO_KEY, Runs, serve
from tests.gateway_rest.pipeline import start_run
from tests.support import free_port
from tidings.settings import (
    KafkaSettings,
    RedisSettings,
    Settings,
    TemporalSettings,
)
from workers.catalog import open_catalog

pytestmark = pytest.mark.integration


async def test_healthz_and_readyz(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"temporal": "ok", "kafka": "ok", "redis": "ok", "pipelines": "ok"},
    }


def with_closed_port(settings: Settings, service: str) -> Settings:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    return Settings(
        temporal=TemporalSettings(address=closed) if service == "temporal" else settings.temporal,
        kafka=KafkaSettings(bootstrap_servers=closed) if service == "kafka" else settings.kafka,
        redis=RedisSettings(url=SecretStr(f"redis://{closed}/0"))
        if service == "redis"
        else settings.redis,
        tenants=settings.tenants,
        gateway=settings.gateway,
    )


@pytest.mark.parametrize("service", ["temporal", "kafka", "redis"])
async def test_readyz_is_503_naming_the_service_that_is_down(
    rest_settings: Settings, service: str
) -> None:
    settings = with_closed_port(rest_settings, service)
    with serve(
        lambda: create_app(settings, pipelines=open_catalog, starter=start_run), free_port()
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.get("/readyz")
            assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["code"] == "unavailable"
    # The pipelines registry lives in Redis: without Redis it cannot be read either.
    down = [service, "pipelines"] if service == "redis" else [service]
    assert body["error"]["message"] == f"not ready: {', '.join(down)} down"
    assert body["checks"][service] != "ok"
    assert [name for name, state in body["checks"].items() if state != "ok"] == down


async def test_metrics_count_requests_by_route_template(
    demo: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    for _ in range(2):
        await demo.get("/v1/runs/demo-00000000000000000000000000000000")
    text = (await anonymous.get("/metrics")).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("tidings_gateway_http_requests_total{")
        and 'route="/v1/runs/{run_id}"' in line
        and 'status="404"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
    assert "demo-0000" not in text  # raw paths never become labels
    assert "tidings_gateway_http_request_seconds_bucket" in text
    assert "tidings_stream_" in text  # the stream service shares the registry


async def test_openapi_documents_routes_models_and_errors(anonymous: httpx.AsyncClient) -> None:
    doc = (await anonymous.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/signals/{name}",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/history",
        "/v1/runs/{run_id}/events",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    start = paths["/v1/runs"]["post"]
    assert start["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RunStarted"
    )
    assert start["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    # FastAPI's default {"detail": ...} validation body is not what we answer.
    assert "HTTPValidationError" not in json.dumps(start["responses"].get("422", {}))


async def test_stream_is_mounted_and_shares_auth_and_ownership(
    demo: httpx.AsyncClient, gateway_url: str, runs: Runs, events_topic_name: str
) -> None:
    created = await demo.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "w"}})
    run_id = runs.track(created.json()["run_id"])
    ws_url = gateway_url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"

    async with websockets.connect(f"{ws_url}?access_token={DEMO_KEY}") as socket:
        first = json.loads(await socket.recv())
    assert first["kind"] == "token", first

    for key, code in (("wrong-key-1234", 4401), (ACME_KEY, 4404)):
        async with websockets.connect(f"{ws_url}?access_token={key}") as socket:
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await socket.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == code
