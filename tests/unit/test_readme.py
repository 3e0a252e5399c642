"""Docs stay true: the README's configuration table lists every setting with
its real default, and it opens with its title, one sentence and the two commands CI relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from annotated_types import Ge
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from infra.settings import all_settings_classes
from tidings.settings import GatewaySettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(TIDINGS_[A-Z0-9_]+)` \| (.*?) \| (.*) \|$")


def _default(cls: type[BaseSettings], field: str) -> str:
    info = cls.model_fields[field]
    if info.repr is False or info.annotation is SecretStr:
        return "(secret)"
    value = info.get_default(call_default_factory=True)
    if value is None or value == [] or value == "":
        return "(empty)"
    if isinstance(value, Path) and str(value).startswith(str(Path.home())):
        return f"`~/{value.relative_to(Path.home())}`"
    return f"`{value}`"


def expected_rows() -> dict[str, str]:
    rows = {}
    for cls in all_settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field in cls.model_fields:
            rows[f"{prefix}{field}".upper()] = _default(cls, field)
    return rows


def documented_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    expected, documented = expected_rows(), documented_rows()
    missing = sorted(set(expected) - set(documented))
    stale = sorted(set(documented) - set(expected))
    wrong = {k: (documented[k], v) for k, v in expected.items() if documented.get(k, v) != v}
    hint = "\n".join(f"| `{k}` | {v} | … |" for k, v in expected.items() if k in missing)
    assert (missing, stale, wrong) == ([], [], {}), hint


def test_the_token_ttl_row_states_the_minimum_the_gateway_enforces() -> None:
    meaning = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `TIDINGS_GATEWAY_TOKEN_TTL_SECONDS` |")
    )
    metadata = GatewaySettings.model_fields["token_ttl_seconds"].metadata
    minimum = next(item.ge for item in metadata if isinstance(item, Ge))
    assert f"at least {minimum} s" in meaning, meaning


def test_readme_opens_with_title_sentence_and_exactly_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    title, _, sentence, _, *block = head
    assert title == "# Tidings"
    assert sentence.endswith(".") and sentence.count(". ") == 0, "one sentence"
    assert block == ["```sh", block[1], block[2], "```"]
    assert block[1].startswith("make up ")
    assert block[2].startswith("make test ")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
