"""Pipeline specs, input validation, mappings and the offline pieces: no services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from activities.models.offline import NOTICE, OfflineProvider
from activities.research import plan_sub_questions
from activities.search_index import SearchIndex
from tidings.errors import BadRequest
from workflows import refs
from workflows.builtin import AGENT, RESEARCH
from workflows.registry import PipelineRegistry, load_dir
from workflows.spec import SpecError, load_spec

pytestmark = pytest.mark.unit


def _pipeline(**step: Any) -> dict[str, Any]:
    return {"name": "p", "steps": [{"name": "a", "activity": "x"}, {"name": "b", **step}]}


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"name": "p", "steps": []}, "steps: List should have at least 1 item"),
        ({"name": "Bad Name", "steps": [{"name": "a", "activity": "x"}]}, "name: String"),
        (_pipeline(), "steps[1]: activity is required when kind is 'activity'"),
        (_pipeline(activity="x", retry={"max_attempts": 0}), "steps[1].retry.max_attempts"),
        (_pipeline(activity="x", timeout="1s"), "steps[1].timeout: Extra inputs"),
        (_pipeline(activity="x", input={"q": "$steps.zzz"}), "steps[1].input: '$steps.zzz'"),
        (_pipeline(activity="x", input={"q": "$nothing"}), "steps[1].input: bad reference"),
        (_pipeline(activity="x", for_each="literal"), "for_each must be a reference"),
        (_pipeline(name="a", activity="x"), "steps[1].name: duplicate step name"),
        (_pipeline(kind="approval", activity="x"), "takes no activity"),
        (
            {
                "name": "p",
                "steps": [
                    {"name": "a", "activity": "x", "parallel_group": "g"},
                    {
                        "name": "b",
                        "activity": "x",
                        "parallel_group": "g",
                        "input": {"v": "$steps.a"},
                    },
                ],
            },
            "steps[1].input: '$steps.a' runs in the same parallel group",
        ),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(SpecError) as error:
        load_spec(raw, source="test.yaml")
    assert names in str(error.value)
    assert str(error.value).startswith("test.yaml: invalid pipeline spec")


def test_yaml_and_json_files_load_and_errors_name_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(
        "name: one\nsteps:\n  - name: a\n    activity: research.plan\n"
        "    input: {question: $input.q}\ninput:\n  q: {type: string, max_length: 5}\n"
    )
    (tmp_path / "two.json").write_text('{"name": "two", "steps": [{"name": "a", "activity": "x"}]}')
    (tmp_path / "notes.txt").write_text("ignored")
    assert [spec.name for spec in load_dir(tmp_path)] == ["one", "two"]

    registry = PipelineRegistry.with_builtins(tmp_path)
    assert registry.names() == ["agent", "one", "research", "two"]
    with pytest.raises(BadRequest, match=r"input\.q must have at most 5"):
        registry.validate_input("one", {"q": "too long"})
    with pytest.raises(SpecError, match=r"pipeline 'two': steps\[0\].activity: no activity"):
        registry.check_activities(RESEARCH.activities() | AGENT.activities())

    (tmp_path / "three.yaml").write_text("name: three\nsteps:\n  - name: a\n    kind: magic\n")
    with pytest.raises(SpecError, match=r"three.yaml: .*steps\[0\].kind"):
        load_dir(tmp_path)


def test_research_input_defaults_and_limits() -> None:
    registry = PipelineRegistry.with_builtins()
    assert registry.validate_input("research", {"question": "Why?"}) == {
        "question": "Why?",
        "require_approval": False,
    }
    with pytest.raises(BadRequest, match="input must be a JSON object"):
        registry.validate_input("research", ["Why?"])


def test_mappings_resolve_against_input_outputs_and_items() -> None:
    scope = {"input": {"q": "why"}, "steps": {"plan": {"subs": ["a", "b"]}}, "item": "a"}
    template = {"q": "$input.q", "second": "$steps.plan.subs.1", "lit": "$$5", "x": ["$item", 3]}
    assert refs.resolve(template, scope) == {"q": "why", "second": "b", "lit": "$5", "x": ["a", 3]}
    assert refs.lookup("$steps.skipped.field", scope) is None
    assert [len(stage) for stage in RESEARCH.stages()] == [1, 1, 1, 1, 1]


def test_offline_provider_is_extractive_and_says_so() -> None:
    index = SearchIndex.bundled()
    assert len(index) >= 12
    passages = index.search("idempotent producer duplicates")
    assert passages[0].doc == "idempotent-producer"
    provider = OfflineProvider()
    tokens = provider.tokens("How do idempotent producers avoid duplicates?", passages)
    text = "".join(tokens)
    assert text.startswith(NOTICE) and "[idempotent-producer]" in text
    assert len(tokens) > 20
    assert plan_sub_questions("What is Kafka, and how do consumer groups share partitions?") == [
        "What is Kafka, and how do consumer groups share partitions?",
        "What is Kafka",
        "how do consumer groups share partitions",
    ]


def test_worker_refuses_a_bad_pipeline_file_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - name: a\n    activity: research.plan\n"
        "    retry: {max_attempts: 0}\n"
    )
    env = {**os.environ, "TIDINGS_WORKER_PIPELINES_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "bad.yaml" in done.stderr and "steps[0].retry.max_attempts" in done.stderr


def test_a_single_question_is_not_planned_twice() -> None:
    # "Why X?" and its clause "Why X" are the same sub-question.
    assert plan_sub_questions("How do resume tokens survive a dropped connection?") == [
        "How do resume tokens survive a dropped connection?"
    ]
