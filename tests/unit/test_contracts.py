"""Architecture rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tidings.runs import run_id_for, tenant_of_run
from tidings.topics import dlq_topic, events_topic, is_valid_tenant, tenant_of_topic

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PLANES = {"workflows", "activities", "gateway", "workers", "infra", "cli"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_shared_package_imports_no_plane() -> None:
    # tidings/cli.py only hands ``python -m tidings.cli`` to the entry point, cli/.
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & PLANES)
        for path in (ROOT / "tidings").rglob("*.py")
        if path.name != "cli.py" and _imports(path) & PLANES
    }
    assert offenders == {}


def test_nothing_imports_the_cli() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for plane in [*PLANES - {"cli"}, "tidings"]
        for path in (ROOT / plane).rglob("*.py")
        if "cli" in _imports(path) and path != ROOT / "tidings" / "cli.py"
    ]
    assert offenders == []


def test_workflows_do_no_io() -> None:
    # Workflow code must replay identically: no clients, clocks or settings.
    forbidden = {
        "aiokafka",
        "redis",
        "httpx",
        "socket",
        "time",
        "random",
        "os",
        "pydantic_settings",
    }
    for path in (ROOT / "workflows").rglob("*.py"):
        assert not (_imports(path) & forbidden), path


def test_idempotency_key_decides_the_run_id_per_tenant() -> None:
    assert run_id_for("acme", "k1") == run_id_for("acme", "k1")
    assert run_id_for("acme", "k1") != run_id_for("other", "k1")
    assert run_id_for("acme", None) != run_id_for("acme", None)
    assert tenant_of_run(run_id_for("my-team", "k")) == "my-team"
    assert tenant_of_run("nodash") is None


@pytest.mark.parametrize("name", ["acme", "a", "team-7", "x" * 48])
def test_valid_tenants(name: str) -> None:
    assert is_valid_tenant(name)
    assert tenant_of_topic("tidings", events_topic("tidings", name)) == name


@pytest.mark.parametrize("name", ["", "Acme", "-a", "a-", "a.b", "a_b", "x" * 49, "a/b"])
def test_invalid_tenants_never_become_topics(name: str) -> None:
    assert not is_valid_tenant(name)
    with pytest.raises(ValueError, match="invalid tenant"):
        events_topic("tidings", name)


def test_dlq_is_not_a_tenant_topic() -> None:
    assert tenant_of_topic("tidings", dlq_topic("tidings")) is None


def _modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, by its full name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_workers_import_no_gateway() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "workers").rglob("*.py")
        if "gateway" in _imports(path)
    ]
    assert offenders == []


def test_the_gateway_imports_no_orchestration_code_but_at_its_entry_point() -> None:
    # The command passes the pipeline catalog in (create_app(pipelines=...)).
    entry = ROOT / "gateway" / "server" / "command.py"
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in (ROOT / "gateway").rglob("*.py")
        if path != entry and (found := _imports(path) & {"workflows", "activities", "workers"})
    }
    assert offenders == {}


def test_the_server_layer_imports_no_stream_internals() -> None:
    # It serves the stream through fast_path.StreamEndpoint and offers it the
    # frame sink (server/sink.py); the app is composed in gateway/app.py.
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in (ROOT / "gateway" / "server").rglob("*.py")
        if (found := {m for m in _modules(path) if m.startswith("gateway.stream")})
    }
    assert offenders == {}
