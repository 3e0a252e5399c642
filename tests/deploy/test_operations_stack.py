"""The compose stack's Prometheus and Grafana, checked without a Docker engine:
Prometheus scrapes every gateway and worker where they serve /metrics,
Grafana is provisioned with that Prometheus and the shipped dashboard, and the
dashboard only queries series that docs/operations.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_compose import SAMPLE_ENV, environment_of, mounts, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "infra" / "docker"
OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found = yaml.safe_load(COMPOSE.read_text())["services"]
    assert isinstance(found, dict)
    return found


def _mounted(service: dict[str, Any], target: str) -> Path:
    for source, destination in mounts(service):
        if destination == target:
            path = (ROOT / source).resolve()
            assert path.is_relative_to(DOCKER), path
            return path
    raise AssertionError(f"nothing mounted at {target}")


def _by_role(services: dict[str, dict[str, Any]], role: str) -> list[str]:
    return [name for name, svc in services.items() if svc.get("command") == [role]]


def test_prometheus_scrapes_every_gateway_and_worker(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    config = yaml.safe_load(_mounted(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    command = " ".join(prometheus["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name in _by_role(services, "gateway"):
        port = render(environment_of(services[name]), SAMPLE_ENV)["TIDINGS_GATEWAY_PORT"]
        assert f"{name}:{port}" in targets, name
    for name in _by_role(services, "worker"):
        env = render(environment_of(services[name]), SAMPLE_ENV)
        assert env["TIDINGS_WORKER_METRICS_HOST"] == "0.0.0.0", name
        port = int(env["TIDINGS_WORKER_METRICS_PORT"])
        assert port > 0 and f"{name}:{port}" in targets, name


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "tidings.yml").read_text())
    folder = providers["providers"][0]["options"]["path"]
    dashboards = _mounted(grafana, folder)
    password = environment_of(grafana)["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "no default admin password"
    dashboard = json.loads((dashboards / "tidings.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]


def test_the_dashboard_queries_only_documented_series() -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "tidings.json").read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    queried = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for name in re.findall(r"\b(tidings_[a-z_]+)", exprs)
    }
    documented = OPERATIONS.read_text()
    missing = sorted(name for name in queried if f"`{name}" not in documented)
    assert missing == [], f"queried by the dashboard, not in docs/operations.md: {missing}"
