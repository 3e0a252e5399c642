"""``make up``'s demo (``tidings up --demo``) runs the agent beside research
(issue 17): the research pipeline, then the agent on the same question, each
watched to its end; a failed run stops the demo with its exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.commands import up

pytestmark = pytest.mark.unit


def _runs(monkeypatch: pytest.MonkeyPatch, codes: dict[str, int]) -> list[tuple[str, Any]]:
    ran: list[tuple[str, Any]] = []

    def run(stack: object, api_key: str, pipeline: str, run_input: str) -> int:
        ran.append((pipeline, json.loads(run_input)))
        return codes.get(pipeline, 0)

    monkeypatch.setattr(up, "_demo_run", run)
    return ran


def test_the_demo_runs_research_then_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _runs(monkeypatch, {})
    assert up._demo(object(), "dev-key-demo") == 0  # type: ignore[arg-type]
    question = {"question": up.DEMO_QUESTION}
    assert ran == [("research", question), ("agent", question)]


def test_a_failed_research_run_ends_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _runs(monkeypatch, {"research": 3})
    assert up._demo(object(), "dev-key-demo") == 3  # type: ignore[arg-type]
    assert [pipeline for pipeline, _ in ran] == ["research"]
