"""``gateway.web.mount_dashboard``: what it serves, and what it does not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from gateway.web import STATIC_DIR, mount_dashboard

pytestmark = pytest.mark.unit


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    mount_dashboard(app)
    mount_dashboard(app)  # idempotent
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        yield client


async def test_the_page_is_served_at_the_root_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/dashboard/app.js">' in response.text


@pytest.mark.parametrize(
    ("name", "media_type"), [("app.js", "text/javascript"), ("app.css", "text/css")]
)
async def test_assets_are_served_with_their_types(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await client.get(f"/dashboard/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/dashboard/index.html", "/dashboard/..%2F__init__.py"])
async def test_nothing_else_is_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "mount_dashboard" not in response.text


async def test_routes_stay_out_of_the_api_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/dashboard") for path in paths)


def test_the_script_never_renders_event_data_as_html() -> None:
    script = (STATIC_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
