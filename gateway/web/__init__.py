"""The live dashboard: one HTML page, one ES module and one stylesheet, served
by the gateway itself at ``/`` (no CDN, no framework), on the JavaScript
client ``@tidings/client`` (clients/js).

The page is a plain client of the public contract: it calls the REST API with
the API key the user enters and subscribes to ``/v1/runs/{id}/stream`` with
``?access_token=`` and a read token minted for the run, through the client's
``RunStream`` (resume, dedupe, acks, backoff); each step's state is the
client's ``reduceRun``. Nothing here reads a run or holds state: it only
serves files.

The client's ES modules are not in git: ``make deps`` compiles clients/js into
``static/client/`` (the image's Node stage does the same). They are served
under ``/dashboard/client/`` from a fixed list of names. Without them the
gateway logs one warning when the dashboard is mounted, the page says what is
missing, and the API is unaffected.

Wiring (``create_app``)::

    from gateway.web import mount_dashboard
    mount_dashboard(app)

Calling it twice is harmless. The routes are left out of the OpenAPI document.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

__all__ = ["ASSETS", "CLIENT_DIR", "CLIENT_MODULES", "STATIC_DIR", "mount_dashboard"]

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
CLIENT_DIR: Final = STATIC_DIR / "client"

# The only files served under /dashboard/: a fixed table, so no request path
# ever reaches the file system and metrics see bounded route labels.
ASSETS: Final[dict[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

# The client's compiled modules (clients/js/src/*.ts reachable from index.ts),
# likewise a fixed table: served under /dashboard/client/ when present.
CLIENT_MODULES: Final = frozenset(
    f"{name}.js"
    for name in ("index", "client", "stream", "reduce", "errors", "backoff", "store", "events")
)
JS_MEDIA_TYPE: Final = "text/javascript; charset=utf-8"

# The page loads nothing from elsewhere, and never runs inline script: data
# from events is rendered as text, and this policy backs that up.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

_COMMON_HEADERS: Final[dict[str, str]] = {
    # Revalidated on every load (ETag): a gateway upgrade is seen at once.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_MOUNTED_FLAG: Final = "dashboard_mounted"


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "not_found", "message": message}}, status_code=404)


def dashboard_router(client_dir: Path = CLIENT_DIR) -> APIRouter:
    """The page, its two assets, and the client's modules read from ``client_dir``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> Response:
        headers = {
            **_COMMON_HEADERS,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Frame-Options": "DENY",
        }
        return FileResponse(
            STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=headers
        )

    @router.get("/dashboard/{name}")
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            return _not_found("no such dashboard file")
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_COMMON_HEADERS)

    @router.get("/dashboard/client/{name}")
    async def client_module(name: str) -> Response:
        if name not in CLIENT_MODULES:
            return _not_found("no such dashboard file")
        path = client_dir / name
        if not path.is_file():
            return _not_found("the dashboard's client is not built: run `make deps`")
        return FileResponse(path, media_type=JS_MEDIA_TYPE, headers=_COMMON_HEADERS)

    return router


def client_missing(client_dir: Path) -> list[str]:
    """The client modules absent from ``client_dir`` (empty when the build is there)."""
    return sorted(name for name in CLIENT_MODULES if not (client_dir / name).is_file())


def mount_dashboard(app: FastAPI, client_dir: Path = CLIENT_DIR) -> None:
    """Serve the dashboard at ``/`` (its assets and the client's modules under
    ``/dashboard/``). Logs one warning when the client's build is missing.

    Idempotent: a second call on the same app does nothing.
    """
    if getattr(app.state, _MOUNTED_FLAG, False):
        return
    missing = client_missing(client_dir)
    if missing:
        log.warning(
            "the dashboard's JavaScript client is not built (%s missing in %s): "
            "the page at / will say so; the API is unaffected. Run `make deps`.",
            ", ".join(missing),
            client_dir,
        )
    app.include_router(dashboard_router(client_dir))
    setattr(app.state, _MOUNTED_FLAG, True)
