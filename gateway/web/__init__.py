"""The live dashboard: one HTML page, one ES module and one stylesheet, served
by the gateway itself at ``/`` (no build step, no CDN, no framework).

The page is a plain client of the public contract: it calls the REST API with
the API key the user enters and subscribes to ``/v1/runs/{id}/stream`` with
``?access_token=`` and a read token minted for the run, resuming with its
token after a drop. Nothing here reads a run or holds state: it only serves
three files.

Wiring (``create_app``)::

    from gateway.web import mount_dashboard
    mount_dashboard(app)

Calling it twice is harmless. The routes are left out of the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

__all__ = ["ASSETS", "STATIC_DIR", "mount_dashboard", "router"]

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# The only files served under /dashboard/: a fixed table, so no request path
# ever reaches the file system and metrics see bounded route labels.
ASSETS: Final[dict[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

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
        return JSONResponse(
            {"error": {"code": "not_found", "message": "no such dashboard file"}},
            status_code=404,
        )
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_COMMON_HEADERS)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` (and its two assets under ``/dashboard/``).

    Idempotent: a second call on the same app does nothing.
    """
    if getattr(app.state, _MOUNTED_FLAG, False):
        return
    app.include_router(router)
    setattr(app.state, _MOUNTED_FLAG, True)
