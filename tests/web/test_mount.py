"""``gateway.web.mount_dashboard``: what it serves, and what it does not."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.web import CLIENT_DIR, CLIENT_MODULES, STATIC_DIR, mount_dashboard

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


def built(directory: Path) -> Path:
    """A stand-in for the client's build: every module the gateway serves."""
    for name in CLIENT_MODULES:
        (directory / name).write_text(f"export const name = {name!r};\n")
    return directory


async def test_the_client_modules_are_served_from_a_fixed_list(tmp_path: Path) -> None:
    client_dir = built(tmp_path)
    (client_dir / "react.js").write_text("export {};\n")  # built, but not the page's
    app = FastAPI()
    mount_dashboard(app, client_dir)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        for name in sorted(CLIENT_MODULES):
            response = await client.get(f"/dashboard/client/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"].startswith("text/javascript")
            assert name in response.text
        for path in ("react.js", "index.ts", "..%2Findex.html", "%2E%2E%2Fapp.js"):
            response = await client.get(f"/dashboard/client/{path}")
            assert response.status_code == 404, path
            assert "export" not in response.text


def test_the_page_imports_the_client_it_is_served() -> None:
    script = (STATIC_DIR / "app.js").read_text()
    assert "import('./client/index.js')" in script
    # No private copy of what the client does.
    for private in ("class RunStream", "BACKOFF_", "ACK_INTERVAL", "this.discarded"):
        assert private not in script


async def test_a_missing_build_warns_once_and_leaves_the_api_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()

    @app.get("/v1/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    with caplog.at_level(logging.WARNING, logger="gateway.web"):
        mount_dashboard(app, tmp_path)
        mount_dashboard(app, tmp_path)
    warnings = [r for r in caplog.records if r.name == "gateway.web"]
    assert len(warnings) == 1
    assert "make deps" in warnings[0].getMessage()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        assert (await client.get("/v1/ping")).json() == {"ok": True}
        assert (await client.get("/")).status_code == 200
        module = await client.get("/dashboard/client/index.js")
    assert module.status_code == 404
    assert "make deps" in module.json()["error"]["message"]


def test_the_build_is_where_the_gateway_looks() -> None:
    # `make deps` compiles clients/js here (tsconfig.dashboard.json's outDir),
    # and the gateway's list names exactly what it emits.
    assert CLIENT_DIR == STATIC_DIR / "client"
    if not CLIENT_DIR.is_dir():
        pytest.skip("the client is not built here: `make deps` builds it")
    assert sorted(p.name for p in CLIENT_DIR.glob("*.js")) == sorted(CLIENT_MODULES)
