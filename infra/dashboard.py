"""The dashboard's build: clients/js compiled into ``gateway/web/static/client``.

``make deps`` does it; the dashboard's browser tests call
:func:`ensure_dashboard_client` so a checkout where clients/js changed since
(or was never built) is tested against its current source.

    python -m infra.dashboard      # builds when missing or stale
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from infra.browser import ROOT, _run
from infra.errors import StackError

_NPM_TIMEOUT = 300.0


class DashboardUnbuilt(StackError):
    """clients/js could not be built for the dashboard."""


def _quiet(message: str) -> None:
    del message


def stale(root: Path = ROOT) -> bool:
    """True when the build is missing or older than the client's source."""
    built = root / "gateway" / "web" / "static" / "client" / "index.js"
    if not built.is_file():
        return True
    package = root / "clients" / "js"
    sources = [*package.glob("src/*.ts"), *package.glob("tsconfig*.json")]
    return any(source.stat().st_mtime > built.stat().st_mtime for source in sources)


def ensure_dashboard_client(root: Path = ROOT, say: Callable[[str], None] = _quiet) -> None:
    """``npm ci`` (when the compiler is missing) and ``npm run build:dashboard``
    in clients/js, unless the build is current. Serialised across processes."""
    lock_path = Path(tempfile.gettempdir()) / "tidings-dashboard-build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stale(root):
            return
        npm = shutil.which("npm")
        if npm is None:
            raise DashboardUnbuilt("npm is needed: apt-get install -y nodejs npm")
        package = root / "clients" / "js"
        if not (package / "node_modules" / "typescript").is_dir():
            say("npm ci in clients/js")
            command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
            if _run(command, _env(), _NPM_TIMEOUT, cwd=package) != 0:
                raise DashboardUnbuilt(f"npm ci failed in {package}")
        say("npm run build:dashboard in clients/js")
        if _run([npm, "run", "build:dashboard"], _env(), _NPM_TIMEOUT, cwd=package) != 0:
            raise DashboardUnbuilt(f"npm run build:dashboard failed in {package}")
        # tsc leaves an unchanged output's time alone: mark the build current.
        (root / "gateway" / "web" / "static" / "client" / "index.js").touch()


def _env() -> dict[str, str]:
    return dict(os.environ)


def main() -> int:
    def say(message: str) -> None:
        print(f"[dashboard] {message}", file=sys.stderr)

    try:
        ensure_dashboard_client(say=say)
    except DashboardUnbuilt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
