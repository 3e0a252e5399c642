"""What ``tidings up`` says about API keys: the keys the gateways it starts
will accept, never a default that a configured set has replaced."""

from __future__ import annotations

import pytest

from infra.commands.up import demo_key, key_lines

pytestmark = pytest.mark.unit


def test_the_default_key_is_printed_whole_and_said_to_be_the_default() -> None:
    lines = key_lines({"dev-key-demo": "demo"}, configured=False)
    assert lines == [
        "api key      dev-key-demo   (tenant demo, the local default; "
        "TIDINGS_TENANTS_API_KEYS replaces it)"
    ]


def test_configured_keys_replace_the_default_and_are_masked() -> None:
    keys = {"acme-prod-7f3a9c2e": "acme", "globex-key-0011": "globex"}
    lines = key_lines(keys, configured=True)
    text = "\n".join(lines)
    assert "dev-key-demo" not in text
    assert len(lines) == 2
    assert lines[0] == (
        "api key      acme… (18 characters)   (tenant acme, from TIDINGS_TENANTS_API_KEYS)"
    )
    assert "tenant globex" in lines[1] and "glob…" in lines[1]
    for key in keys:
        assert key not in text


def test_the_demo_uses_a_key_in_force() -> None:
    keys = {"acme-prod-7f3a9c2e": "acme", "globex-key-0011": "globex"}
    assert demo_key(keys, None) == "acme-prod-7f3a9c2e"
    assert demo_key(keys, "dev-key-demo") == "acme-prod-7f3a9c2e"  # replaced: would get 401
    assert demo_key(keys, "globex-key-0011") == "globex-key-0011"
