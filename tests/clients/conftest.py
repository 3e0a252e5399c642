"""Fixtures of the JavaScript client's real-stack tests: the built package
(``npm ci`` and ``npm run build`` in clients/js when dist/ is missing), and
the browser (Debian's chromium driven by playwright-core, as tests/web does)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.browser import Browser, BrowserUnavailable, ensure_browser

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"


@pytest.fixture(scope="session")
def js_client() -> Path:
    """The built entry point, dist/index.js."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node and npm are needed for the JavaScript client's tests")
    entry = PACKAGE / "dist" / "index.js"
    if not (PACKAGE / "node_modules" / ".bin" / "tsc").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True, timeout=300
        )
    if not entry.exists():
        subprocess.run(["npm", "run", "build"], cwd=PACKAGE, check=True, timeout=300)
    return entry


@pytest.fixture(scope="session")
def browser() -> Browser:
    try:
        return ensure_browser()
    except BrowserUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no browser for the React page's test: {exc}")
        pytest.skip(f"no browser for the React page's test: {exc}")
