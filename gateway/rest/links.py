"""URLs a response hands the client: the run's stream and its Temporal UI page."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request

from tidings.runs import stream_path
from tidings.settings import Settings


def base_url(settings: Settings, request: Request) -> str:
    """``TIDINGS_GATEWAY_PUBLIC_URL`` behind a proxy, else the URL the client used."""
    if settings.gateway.public_url:
        return settings.gateway.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def stream_url(settings: Settings, request: Request, run_id: str) -> str:
    base = base_url(settings, request)
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + stream_path(quote(run_id))


def temporal_ui_url(settings: Settings, run_id: str) -> str:
    ui = settings.temporal.ui_url.rstrip("/")
    namespace = quote(settings.temporal.namespace)
    return f"{ui}/namespaces/{namespace}/workflows/{quote(run_id)}"
