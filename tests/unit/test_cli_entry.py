"""The ``tidings`` entry point: both module spellings start it, and a command
imports only the plane it needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module", ["cli", "tidings.cli"])
def test_both_module_spellings_run_the_cli(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "status", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tidings status")


def test_a_command_imports_only_its_own_plane() -> None:
    script = (
        "import sys\n"
        "from cli.main import _build_parser\n"
        "_build_parser(['status'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'gateway', 'workers'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
