"""A gateway process for the dashboard's end-to-end test: ``tidings gateway``'s own
server config (``gateway.server.command.server_config``; ``create_app`` mounts the
dashboard). Run as ``python -m tests.web.gateway_main`` with the
``TIDINGS_*`` environment; the test SIGKILLs it and starts it again.
"""

from __future__ import annotations

import uvicorn

from gateway.server.command import server_config
from tidings.settings import Settings


def main() -> None:
    uvicorn.Server(server_config(Settings())).run()


if __name__ == "__main__":
    main()
