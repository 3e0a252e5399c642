"""What the Helm chart's checks need: ``helm``, ``kubeconform`` and local schemas.

Both tools are built with ``go install`` from the Go module proxy at pinned
versions. kubeconform must not fetch schemas (its default location, GitHub, is
unreachable here), so the schemas are generated from sources the proxy also
serves: Kubernetes' OpenAPI document (``api/openapi-spec/swagger.json`` of the
``k8s.io/kubernetes`` module), and the CRDs of KEDA and the Prometheus
operator. Everything lands in ``<cache>/go`` (``~/.cache/tidings/go``), never
in the repository. Each step is idempotent and takes milliseconds when its
result is present, so every test session may call :func:`ensure_chart_tools`.

    python -m infra.chart      # installs what is missing, prints the paths
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.errors import StackError

HELM = ("helm.sh/helm/v4/cmd/helm", "v4.3.2")
KUBECONFORM = ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
# The Kubernetes release whose API the chart is checked against.
KUBERNETES = ("k8s.io/kubernetes", "v1.37.2")
# v2.21 needs Go 1.27.4 to download; its CRDs match v2.20's for ScaledObject.
KEDA = ("github.com/kedacore/keda/v2", "v2.20.2")
PROMETHEUS_OPERATOR = ("github.com/prometheus-operator/prometheus-operator", "v0.85.0")
CRD_FOLDERS = {KEDA: "config/crd/bases", PROMETHEUS_OPERATOR: "example/prometheus-operator-crd"}
# Bump when the conversion below changes, so cached schemas are made again.
_SCHEMA_FORMAT = "1"
# kubeconform's template for where a kind's schema is (see schema_location).
_LAYOUT = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

_GO_TIMEOUT = 1800


class ChartToolsUnavailable(StackError):
    """Go is missing, or a tool or schema source could not be fetched."""


@dataclass(frozen=True)
class ChartTools:
    helm: Path
    kubeconform: Path
    schemas: Path

    @property
    def kubernetes_version(self) -> str:
        return KUBERNETES[1].removeprefix("v")

    def schema_location(self) -> str:
        """kubeconform's ``-schema-location``: the local folder, never the default."""
        return f"{self.schemas}/{_LAYOUT}"


def _quiet(message: str) -> None:
    del message


def go_binary() -> Path:
    local = Path("/usr/local/go/bin/go")  # the official tarball's place, often off PATH
    found = shutil.which("go") or (str(local) if os.access(local, os.X_OK) else None)
    if found is None:
        raise ChartToolsUnavailable(
            "go not found: install Go 1.26 from go.dev/dl to check the chart"
        )
    return Path(found)


def ensure_tool(
    module: str, version: str, bin_dir: Path, say: Callable[[str], None] = _quiet
) -> Path:
    """``go install module@version`` into ``bin_dir``, unless that version is there."""
    name = module.rsplit("/", 1)[-1]
    binary, stamp = bin_dir / name, bin_dir / f".{name}.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return binary
    bin_dir.mkdir(parents=True, exist_ok=True)
    say(f"go install {module}@{version} (compiles: minutes on a busy machine)")
    _go(["install", f"{module}@{version}"], GOBIN=str(bin_dir))
    if not binary.exists():
        raise ChartToolsUnavailable(f"go install {module}@{version} made no {binary}")
    stamp.write_text(version + "\n")
    return binary


def module_dir(module: str, version: str) -> Path:
    """The module's source tree, fetched through the Go module proxy if needed."""
    out = _go(["mod", "download", "-json", f"{module}@{version}"])
    info = json.loads(out)
    if info.get("Error") or not info.get("Dir"):
        raise ChartToolsUnavailable(f"go mod download {module}@{version}: {info.get('Error')}")
    return Path(info["Dir"])


def _go(args: list[str], **env: str) -> str:
    # Outside any module, with the module cache as the only place things land.
    command = [str(go_binary()), *args]
    try:
        done = subprocess.run(
            command,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on", **env},
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GO_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChartToolsUnavailable(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
        raise ChartToolsUnavailable(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")
    return done.stdout.decode()


# -- schemas ---------------------------------------------------------------


def ensure_schemas(root: Path, say: Callable[[str], None] = _quiet) -> Path:
    """kubeconform schemas for every kind of Kubernetes, KEDA and the Prometheus
    operator, in ``root/<sources' hash>/`` (made once, then reused)."""
    sources = [KUBERNETES, *CRD_FOLDERS]
    tag = hashlib.sha256(repr((sources, _SCHEMA_FORMAT)).encode()).hexdigest()[:12]
    folder = root / tag
    if (folder / ".complete").exists():
        return folder
    say(f"making kubeconform schemas in {folder}")
    staging = root / f".{tag}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    swagger = json.loads((module_dir(*KUBERNETES) / "api/openapi-spec/swagger.json").read_text())
    count = write_schemas(staging, openapi_schemas(swagger))
    for source, sub in CRD_FOLDERS.items():
        crds = sorted((module_dir(*source) / sub).glob("*.yaml"))
        if not crds:
            raise ChartToolsUnavailable(f"no CRDs in {source[0]}@{source[1]}/{sub}")
        for path in crds:
            crd = yaml.load(path.read_text(), Loader=_CrdLoader)  # noqa: S506 (a safe loader)
            count += write_schemas(staging, crd_schemas(crd))
    (staging / ".complete").write_text(f"{count} schemas\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


class _CrdLoader(yaml.SafeLoader):
    """PyYAML's safe loader without its YAML 1.1 "value" type, which makes a
    plain ``=`` (an enum value in the Prometheus operator's CRDs) unloadable."""


_CrdLoader.yaml_implicit_resolvers = {
    first: [pair for pair in pairs if pair[0] != "tag:yaml.org,2002:value"]
    for first, pairs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

Schema = dict[str, Any]
# (group or "v1" for the core group, lower-case kind, version, schema)
Entry = tuple[str, str, str, Schema]


def write_schemas(folder: Path, entries: Iterator[Entry]) -> int:
    count = 0
    for group, kind, version, schema in entries:
        path = folder / group / f"{kind}_{version}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, separators=(",", ":")))
        count += 1
    return count


def _group_dir(group: str, version: str) -> str:
    # kubeconform's {{ .Group }} is the apiVersion's part before "/", which
    # for the core group ("v1") is the version itself.
    return group or version


def openapi_schemas(swagger: dict[str, Any]) -> Iterator[Entry]:
    """One standalone, strict schema per kind of Kubernetes' OpenAPI v2 document."""
    definitions: dict[str, Schema] = swagger["definitions"]
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            schema = _inline(definition, definitions, (name,))
            yield _group_dir(group, version), kind.lower(), version, schema


_SPECIAL: dict[str, Schema] = {
    # Written as strings in the OpenAPI document; manifests use either form.
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["string", "integer"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": ["string", "number"]},
}
_REF = "#/definitions/"


def _inline(node: Any, definitions: dict[str, Schema], seen: tuple[str, ...]) -> Any:
    """``node`` with every ``$ref`` replaced by its definition and objects made
    strict. A recursive reference (JSONSchemaProps) is left open ({})."""
    if isinstance(node, list):
        return [_inline(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        name = ref[len(_REF) :]
        if name in _SPECIAL:
            return dict(_SPECIAL[name])
        if name in seen:
            return {}
        return _inline(definitions[name], definitions, (*seen, name))
    out = {
        key: _inline(value, definitions, seen)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") or key == "x-kubernetes-preserve-unknown-fields"
    }
    return _strict(out)


def _strict(schema: Schema) -> Schema:
    # What "-strict" means to kubeconform: a field the API does not know is an
    # error, unless the API itself keeps unknown fields.
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    if schema.get("format") == "int-or-string":
        schema.pop("format")
        schema["type"] = ["string", "integer"]
    return schema


def crd_schemas(crd: dict[str, Any]) -> Iterator[Entry]:
    """One strict schema per served version of a CustomResourceDefinition."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if schema is None:
            continue
        yield _group_dir(group, version["name"]), kind.lower(), version["name"], _crd_strict(schema)


def _crd_strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_crd_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _crd_strict(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "string"}, {"type": "integer"}])
    return _strict(out)


# -- entry points ----------------------------------------------------------


def ensure_chart_tools(cache: Path, say: Callable[[str], None] = _quiet) -> ChartTools:
    """helm, kubeconform and the schemas under ``cache/go``; safe to call from
    concurrent processes (a lock file serialises the installs)."""
    base = cache / "go"
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        helm = ensure_tool(*HELM, base / "bin", say)
        kubeconform = ensure_tool(*KUBECONFORM, base / "bin", say)
        schemas = ensure_schemas(base / "schemas", say)
    return ChartTools(helm=helm, kubeconform=kubeconform, schemas=schemas)


def main() -> int:
    from infra.settings import StackSettings
    from tidings.settings import load

    def say(message: str) -> None:
        print(f"[chart] {message}", file=sys.stderr)

    try:
        tools = ensure_chart_tools(load(StackSettings).cache_dir, say)
    except ChartToolsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"helm: {tools.helm} ({HELM[1]})")
    print(f"kubeconform: {tools.kubeconform} ({KUBECONFORM[1]})")
    print(f"schemas: {tools.schemas}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
