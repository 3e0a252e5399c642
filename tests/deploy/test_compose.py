"""The production compose stack, checked without a Docker engine.

These tests read ``docker-compose.yml``, the proxy config, the Dockerfile and the
init scripts under ``infra/docker/`` and hold them to the deployment contract:
the services of docs/design.md's production topology, healthchecks and ordered
start-up, pinned images, Redis with AOF, settings names that exist, secrets that
must come from the env file, a WebSocket-capable proxy in front of both gateways
and nothing else published. The init scripts run against stand-in CLIs.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import shlex
import stat
import subprocess
import threading
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from infra.settings import all_settings_classes, env_names
from tidings import runs, topics
from tidings.errors import ConfigError
from tidings.settings import (
    DEV_API_KEYS,
    DEV_TOKEN_SECRET,
    GatewaySettings,
    Settings,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "infra" / "docker"
ENV_EXAMPLE = DOCKER / "tidings.env.example"

# The two replicas of each that docs/design.md asks for; more may be added.
GATEWAYS = ("gateway-1", "gateway-2")
WORKERS = ("worker-1", "worker-2")
REQUIRED_SERVICES = {
    "postgresql",
    "temporal",
    "temporal-ui",
    "kafka",
    "redis",
    "proxy",
    "prometheus",
    "grafana",
    *GATEWAYS,
    *WORKERS,
}
# Where something may be published on the host, and on which interface.
PUBLISHED = {"proxy": None, "temporal-ui": "127.0.0.1", "grafana": "127.0.0.1"}
# Variables the operator must set; compose has to refuse to start without them.
SECRETS = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "TIDINGS_TENANTS_API_KEYS",
    "TIDINGS_GATEWAY_TOKEN_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
)
SAMPLE_ENV = {
    "POSTGRES_PASSWORD": "a3f1c2e4b5d6a7f8091a2b3c4d5e6f70",
    "REDIS_PASSWORD": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "TIDINGS_TENANTS_API_KEYS": '{"k-acme-3b9d2f7e1c5a8046":"acme"}',
    "TIDINGS_GATEWAY_TOKEN_SECRET": "7c1e9a3f5b2d8e4a6c0f1b3d5e7a9c2e4f6a8b0d",
    "TIDINGS_GATEWAY_PUBLIC_URL": "https://tidings.example.com",
    "GRAFANA_ADMIN_PASSWORD": "5e0b7d2c9a4f6e1b3d8c0a7f2e5b9d4c",
}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|API_KEY|AUTH|TOKEN")
# A whole name; a prefix written as TIDINGS_KAFKA_* in a comment is not one.
TIDINGS_NAME = re.compile(r"\bTIDINGS_[A-Z0-9_]*[A-Z0-9]\b")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# ----------------------------------------------------------------- helpers --


class MissingVariable(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?message}`` and ``$$``, enough to render this file."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if (op == ":?" and not current) or (op == "?" and current is None):
            raise MissingVariable(name)
        return current or ""

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def render(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [render(item, env) for item in node]
    if isinstance(node, dict):
        return {key: render(value, env) for key, value in node.items()}
    return node


def strings(node: Any) -> Iterator[str]:
    """Every string in the parsed file, keys included: what compose interpolates."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)


def variables(document: Any) -> Iterator[re.Match[str]]:
    for text in strings(document):
        yield from VARIABLE.finditer(text)


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must be the long form, with a condition"
    return deps


def mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for volume in service.get("volumes") or []:
        source, target, *_ = str(volume).split(":")
        pairs.append((source, target))
    return pairs


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def settings_fields() -> dict[str, tuple[type[BaseSettings], str]]:
    fields = {}
    for cls in all_settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field in cls.model_fields:
            fields[f"{prefix}{field}".upper()] = (cls, field)
    return fields


def comparable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def nginx_directives(text: str) -> str:
    """The config without comments, so a commented-out directive never counts."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_block(text: str, header: str) -> str:
    start = re.search(re.escape(header) + r"\s*\{", text)
    assert start, f"no `{header} {{` block in the proxy config"
    depth, index = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[start.end() : index - 1]


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"not an nginx time: {value}"
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return int(int(match[1]) * scale)


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# ---------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    document = yaml.safe_load(compose_text)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found
    return found


@pytest.fixture(scope="module")
def one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Jobs that run to completion: whatever something waits on to *complete*."""
    return {
        name
        for service in services.values()
        for name, dep in depends_on(service).items()
        if dep.get("condition") == "service_completed_successfully"
    }


@pytest.fixture(scope="module")
def proxy_config(services: dict[str, dict[str, Any]]) -> str:
    sources = [src for src, target in mounts(services["proxy"]) if target.startswith("/etc/nginx")]
    assert sources, "the proxy mounts no config of ours"
    path = (ROOT / sources[0]).resolve()
    assert path.is_file() and path.is_relative_to(DOCKER), path
    return nginx_directives(path.read_text())


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    return monkeypatch


# ------------------------------------------------------------- the topology --


def test_the_production_topology_is_all_there(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"
    for gateway in GATEWAYS:
        assert services[gateway].get("command") == ["gateway"], gateway
    for worker in WORKERS:
        assert services[worker].get("command") == ["worker"], worker


def test_long_running_services_have_healthchecks_and_jobs_run_once(
    services: dict[str, dict[str, Any]], one_shot: set[str]
) -> None:
    assert {"temporal-init", "kafka-init"} <= one_shot
    assert not one_shot & REQUIRED_SERVICES, "a long-running service is treated as a job"
    for name, service in services.items():
        if name in one_shot:
            # Unquoted `no` is YAML for false, which compose rejects.
            assert service.get("restart") == "no", f"{name}: a job must not be restarted"
            continue
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        assert not check.get("disable"), name
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart policy"


def test_every_dependency_waits_on_a_condition(
    services: dict[str, dict[str, Any]], one_shot: set[str]
) -> None:
    for name, service in services.items():
        for target, dep in depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = (dep or {}).get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name}: {target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (
                    f"{name} -> {target}: condition {condition!r}"
                )
                assert target in one_shot
    # And the start order exists at all: no cycle.
    order: list[str] = []
    pending = {name: set(depends_on(service)) for name, service in services.items()}
    while pending:
        ready = [name for name, deps in pending.items() if deps <= set(order)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        for name in ready:
            order.append(name)
            del pending[name]


def test_tidings_processes_start_after_the_stack_is_ready(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in (*GATEWAYS, *WORKERS):
        deps = depends_on(services[name])
        for target in ("temporal", "kafka", "redis"):
            assert deps.get(target, {}).get("condition") == "service_healthy", (name, target)
        for job in ("temporal-init", "kafka-init"):
            assert deps.get(job, {}).get("condition") == "service_completed_successfully", (
                name,
                job,
            )
    proxy = depends_on(services["proxy"])
    assert {g: proxy.get(g, {}).get("condition") for g in GATEWAYS} == dict.fromkeys(
        GATEWAYS, "service_healthy"
    )


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
            continue
        image = service.get("image", "")
        match = re.fullmatch(r"[a-z0-9./_-]+:(?P<tag>[\w.-]+)(@sha256:[0-9a-f]{64})?", image)
        assert match, f"{name}: image {image!r} has no tag"
        assert match["tag"] != "latest" and re.search(r"\d", match["tag"]), (
            f"{name}: {image!r} is not pinned to a version"
        )


def test_gateways_and_workers_share_one_built_image(services: dict[str, dict[str, Any]]) -> None:
    built = {services[name].get("image") for name in (*GATEWAYS, *WORKERS)}
    assert len(built) == 1 and None not in built
    for name in (*GATEWAYS, *WORKERS):
        assert services[name].get("init") is True, f"{name}: SIGTERM must reach the process"


def test_stateful_services_keep_their_data_in_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    kafka_dir = environment_of(services["kafka"])["KAFKA_LOG_DIRS"]
    expected = {
        "postgresql": "/var/lib/postgresql/data",
        "kafka": kafka_dir,
        "redis": "/data",
    }
    for name, target in expected.items():
        sources = [src for src, dst in mounts(services[name]) if dst == target]
        assert sources and sources[0] in declared, f"{name}: {target} is not a named volume"


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    command = [str(part) for part in services["redis"]["command"]]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert options.get("--appendonly") == "yes"
    assert options.get("--appendfsync") in ("everysec", "always")
    # Resume tokens must not be evicted to make room.
    assert options.get("--maxmemory-policy") == "noeviction"


def test_kafka_runs_kraft_and_creates_topics_only_from_the_template(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name in (*GATEWAYS, *WORKERS):
        assert environment_of(services[name])["TIDINGS_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


# -------------------------------------------------------------- settings --


def test_every_tidings_name_is_a_setting(compose_text: str) -> None:
    known = env_names()
    sources = {"docker-compose.yml": compose_text}
    for path in DOCKER.rglob("*"):
        if path.is_file() and path.suffix not in (".pyc",):
            sources[str(path.relative_to(ROOT))] = path.read_text()
    unknown = {
        f"{where}: {name}"
        for where, text in sources.items()
        for name in TIDINGS_NAME.findall(text)
        if name not in known
    }
    assert not unknown, f"TIDINGS_* names that no settings class reads: {sorted(unknown)}"


def test_compose_defaults_are_the_settings_defaults(compose: dict[str, Any]) -> None:
    """A default written in compose must not drift from the one in settings."""
    fields = settings_fields()
    checked = 0
    for match in variables(compose):
        name, op, arg = match["name"], match["op"], match["arg"]
        if name not in fields or op != ":-":
            continue
        cls, field = fields[name]
        from_compose = getattr(cls.model_validate({field: arg}), field)
        default = cls.model_fields[field].get_default(call_default_factory=True)
        assert comparable(from_compose) == comparable(default), (
            f"{name}: compose defaults to {arg!r}, settings to {default!r}"
        )
        checked += 1
    assert checked >= 10


def test_secrets_are_required_from_the_env_file(compose: dict[str, Any], compose_text: str) -> None:
    render(compose, SAMPLE_ENV)  # everything resolves with the secrets set
    for secret in SECRETS:
        uses = [m["op"] for m in variables(compose) if m["name"] == secret]
        assert uses and all(op == ":?" for op in uses), f"{secret} must be ${{{secret}:?...}}"
        without = {key: value for key, value in SAMPLE_ENV.items() if key != secret}
        with pytest.raises(MissingVariable) as missing:
            render(compose, without)
        assert missing.value.name == secret
        with pytest.raises(MissingVariable):
            render(compose, {**SAMPLE_ENV, secret: ""})  # `:?` also refuses empty


def test_no_secret_is_written_into_the_compose_file(
    services: dict[str, dict[str, Any]], compose_text: str
) -> None:
    for dev_value in (*DEV_API_KEYS, DEV_TOKEN_SECRET):
        assert dev_value not in compose_text
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if SECRET_NAME.search(key) and value:
                assert VARIABLE.fullmatch(value), f"{name}: {key} is not from the env file"
    redis = [str(part) for part in services["redis"]["command"]]
    assert VARIABLE.fullmatch(redis[redis.index("--requirepass") + 1])


def test_the_env_file_template_names_every_required_variable(compose: dict[str, Any]) -> None:
    example = parse_env_file(ENV_EXAMPLE)
    required = {m["name"] for m in variables(compose) if m["op"] == ":?"}
    assert set(SECRETS) <= required
    assert required <= example.keys(), f"not in the template: {sorted(required - example.keys())}"
    # The template ships no usable secret: as written, compose refuses it.
    assert not any(example[name] for name in SECRETS)


@pytest.mark.parametrize("name", [*GATEWAYS, *WORKERS])
def test_tidings_services_start_in_production_with_these_variables(
    services: dict[str, dict[str, Any]], clean_env: pytest.MonkeyPatch, name: str
) -> None:
    env = render(environment_of(services[name]), SAMPLE_ENV)
    assert env["TIDINGS_ENV"] == "production"
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = Settings()  # raises ConfigError (dev key, weak secret) or on a bad value
    assert settings.redis.url.get_secret_value().startswith("redis://:")
    assert settings.temporal.address == "temporal:7233"
    clean_env.setenv("TIDINGS_TENANTS_API_KEYS", '{"dev-key-demo":"demo"}')
    with pytest.raises(ConfigError):
        Settings()


def test_gateways_listen_where_the_proxy_and_healthcheck_look(
    services: dict[str, dict[str, Any]], proxy_config: str, clean_env: pytest.MonkeyPatch
) -> None:
    upstream = nginx_block(proxy_config, "upstream tidings_gateways")
    servers = set(re.findall(r"^\s*server\s+(\S+)", upstream, re.M))
    gateways = [name for name, svc in services.items() if svc.get("command") == ["gateway"]]
    assert set(GATEWAYS) <= set(gateways)
    expected = set()
    for name in gateways:
        for key, value in render(environment_of(services[name]), SAMPLE_ENV).items():
            clean_env.setenv(key, value)
        gateway = GatewaySettings()
        assert gateway.host == "0.0.0.0", f"{name} must listen beyond the container's loopback"
        assert str(gateway.port) in services[name].get("expose", []), name
        test = services[name]["healthcheck"]["test"]
        assert test[-1] == f"http://127.0.0.1:{gateway.port}/healthz", name
        expected.add(f"{name}:{gateway.port}")
    assert servers == expected, f"proxy upstream {servers}, gateways {expected}"


# ----------------------------------------------------------------- proxy --


def test_the_proxy_passes_websockets_through(proxy_config: str) -> None:
    location = nginx_block(proxy_config, "location /")
    directives = {
        " ".join(line.split()).rstrip(";") for line in location.splitlines() if line.strip()
    }
    assert "proxy_pass http://tidings_gateways" in directives
    assert "proxy_http_version 1.1" in directives
    assert "proxy_set_header Upgrade $http_upgrade" in directives
    connection = re.search(r"proxy_set_header Connection (\$\w+)", location)
    assert connection, "no Connection header for the upgrade"
    mapping = nginx_block(proxy_config, f"map $http_upgrade {connection[1]}")
    assert re.search(r"default\s+upgrade\s*;", mapping)
    assert "proxy_buffering off" in directives
    timeouts = dict(re.findall(r"(proxy_(?:read|send)_timeout)\s+(\w+);", location))
    assert seconds(timeouts["proxy_read_timeout"]) >= 300
    assert seconds(timeouts["proxy_send_timeout"]) >= 300


def test_the_proxy_balances_without_stickiness(proxy_config: str) -> None:
    """Resume tokens let a client land on either replica; stickiness would only
    stop load from moving off a replica after a restart."""
    upstream = nginx_block(proxy_config, "upstream tidings_gateways")
    assert not re.search(r"^\s*(ip_hash|hash|sticky)\b", upstream, re.M)
    # Only one place that defines the upstreams: no second, forgotten copy.
    assert len(re.findall(r"\bupstream\s+\w+", proxy_config)) == 1


def test_only_the_proxy_and_the_loopback_ui_are_published(
    services: dict[str, dict[str, Any]], proxy_config: str
) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == set(PUBLISHED), f"published: {sorted(published)}"
    for name, interface in PUBLISHED.items():
        for port in services[name]["ports"]:
            parts = interpolate(str(port), {}).split(":")
            if interface is None:
                assert len(parts) == 2, f"{name}: {port}"
            else:
                assert len(parts) == 3 and parts[0] == interface, f"{name}: {port} not on loopback"
    container_port = interpolate(str(services["proxy"]["ports"][0]), {}).split(":")[-1]
    assert re.search(rf"^\s*listen\s+{container_port}\s*;", proxy_config, re.M)
    health = services["proxy"]["healthcheck"]["test"][-1]
    assert health.startswith(f"http://127.0.0.1:{container_port}/")
    path = health.split(container_port, 1)[1]
    assert re.search(rf"location\s+=\s+{re.escape(path)}\s*\{{", proxy_config)


# ------------------------------------------------------------- the image --


def test_the_dockerfile_builds_a_non_root_tidings_image() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base[1]), base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tidings"\]', text, re.M)
    copied = [
        source
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    # Every package the project ships is in the image.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (pattern.rstrip("*") for pattern in includes):
        assert package in copied, f"the Dockerfile does not COPY {package}"
    assert "healthcheck.py" in text and "/opt/tidings/healthcheck.py" in text


def test_healthchecks_use_the_script_in_the_image(services: dict[str, dict[str, Any]]) -> None:
    for name in (*GATEWAYS, *WORKERS):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "/opt/tidings/healthcheck.py"], name
    assert services[WORKERS[0]]["healthcheck"]["test"][3:] == ["worker"]
    for name in WORKERS:
        # The worker check finds this container's poller by its hostname.
        assert services[name].get("hostname") == name


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tidings_healthcheck", DOCKER / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_healthcheck_answers_by_status(healthcheck: ModuleType, http_server: str) -> None:
    assert healthcheck.main(["http", f"{http_server}/healthz"]) == 0
    assert healthcheck.main(["http", f"{http_server}/readyz"]) == 1
    assert healthcheck.main(["http", "http://127.0.0.1:9/healthz"]) == 1
    assert healthcheck.main([]) == 2


# ---------------------------------------------------------- the init jobs --


def job_script(services: dict[str, dict[str, Any]], name: str) -> Path:
    entrypoint = services[name]["entrypoint"]
    targets = dict((dst, src) for src, dst in mounts(services[name]))
    script = (ROOT / targets[entrypoint[-1]]).resolve()
    assert script.is_file() and script.is_relative_to(DOCKER)
    return script


FAKE_TEMPORAL = """#!/bin/sh
echo "$*" >> "$FAKE_STATE/log"
case "$1 $2 $3" in
  "operator cluster health") echo SERVING ;;
  "operator namespace describe") [ -f "$FAKE_STATE/namespace" ] || exit 1 ;;
  "operator namespace create") touch "$FAKE_STATE/namespace" ;;
  "operator search-attribute list")
    echo "  Name  Type"; echo "  BuildIds  KeywordList"
    cat "$FAKE_STATE/attributes" 2>/dev/null ;;
  "operator search-attribute create")
    while [ $# -gt 0 ]; do
      [ "$1" = --name ] && echo "  $2  Keyword" >> "$FAKE_STATE/attributes"
      shift
    done ;;
esac
exit 0
"""


def test_temporal_init_registers_the_search_attributes_once(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    script = job_script(services, "temporal-init")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_executable(bin_dir / "temporal", FAKE_TEMPORAL)
    env = render(environment_of(services["temporal-init"]), {"TIDINGS_TEMPORAL_NAMESPACE": "prod"})
    env |= {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(tmp_path)}

    def run() -> list[list[str]]:
        (tmp_path / "log").write_text("")
        subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=60)
        return [shlex.split(line) for line in (tmp_path / "log").read_text().splitlines()]

    calls = run()
    creates = [call for call in calls if call[:3] == ["operator", "search-attribute", "create"]]
    registered = {call[call.index("--name") + 1] for call in creates}
    assert registered == {runs.TENANT_ATTRIBUTE, runs.PIPELINE_ATTRIBUTE}
    for call in creates:
        assert call[call.index("--type") + 1] == "Keyword"
        assert call[call.index("--namespace") + 1] == "prod"
        assert call[call.index("--address") + 1] == "temporal:7233"
    namespace = [call for call in calls if call[:3] == ["operator", "namespace", "create"]]
    assert len(namespace) == 1 and "prod" in namespace[0] and "--retention" in namespace[0]
    # Idempotent: a second run creates nothing.
    again = run()
    assert not [call for call in again if "create" in call[:3]]


def test_kafka_init_creates_the_dlq_from_the_topic_template(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    script = job_script(services, "kafka-init")
    fake = tmp_path / "kafka-topics.sh"
    write_executable(fake, f'#!/bin/sh\necho "$*" >> {tmp_path}/log\n')
    env = render(
        environment_of(services["kafka-init"]),
        {"TIDINGS_KAFKA_TOPIC_PREFIX": "acme-prod", "TIDINGS_KAFKA_PARTITIONS": "12"},
    )
    env |= {"KAFKA_TOPICS_BIN": str(fake), "PATH": os.environ["PATH"]}
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True, timeout=60)
    created = {}
    for line in (tmp_path / "log").read_text().splitlines():
        args = shlex.split(line)
        if "--create" in args:
            assert "--if-not-exists" in args
            assert args[args.index("--bootstrap-server") + 1] == "kafka:9092"
            created[args[args.index("--topic") + 1]] = args
    prefix = "acme-prod"
    assert set(created) == {
        topics.dlq_topic(prefix),
        topics.requests_topic(prefix),
        topics.completions_topic(prefix),
    }
    for args in created.values():
        assert args[args.index("--partitions") + 1] == "12"
        assert args[args.index("--replication-factor") + 1] == "1"
        assert args[args.index("--config") + 1].startswith("retention.ms=")
