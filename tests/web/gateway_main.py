"""A gateway process for the dashboard's end-to-end test: ``tidings gateway``'s own
server config (``gateway.command.server_config``) with the dashboard mounted.

``mount_dashboard`` is idempotent, so this stays right once ``create_app``
mounts the dashboard itself. Run as ``python -m tests.web.gateway_main`` with
the ``TIDINGS_*`` environment; the test SIGKILLs it and starts it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.command import server_config
from gateway.web import mount_dashboard
from tidings.settings import Settings


def with_dashboard(factory: Callable[[], FastAPI]) -> Callable[[], FastAPI]:
    def make_app() -> FastAPI:
        app = factory()
        mount_dashboard(app)
        return app

    return make_app


def main() -> None:
    config = server_config(Settings())
    app: Any = config.app
    if config.factory:
        config.app = with_dashboard(app)
    else:
        mount_dashboard(app)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
