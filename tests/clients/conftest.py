"""Fixtures of the JavaScript client's real-stack tests: the built package
(``npm ci`` and ``npm run build`` in clients/js when dist/ is missing) and Node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
