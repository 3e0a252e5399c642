"""Pipelines as deployable units, the pure parts: which task queue a run goes
to, what a worker announces, how a bad folder is reported, `--activities`
from the current directory, `tidings up`'s options, `tidings pipelines`' text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from cli.pipelines import render
from infra.commands.up import user_code
from infra.services.apps import UserCode
from tests.pipelines.userland import BAD_SPEC, GREET_SPEC
from workers.announce import Announcement, spec_version
from workers.announcer import announcements_of
from workers.build import load_factory
from workers.catalog import describe
from workflows.builtin import RESEARCH
from workflows.registry import PipelineRegistry, dedicated_queue, load_dir
from workflows.spec import SpecError, load_spec

pytestmark = pytest.mark.unit

GREET = load_spec(
    {"name": "greet", "steps": [{"name": "hello", "activity": "greet.hello"}]}, source="t"
)


def test_builtins_run_on_the_deployment_queue_and_folder_pipelines_on_their_own(
    tmp_path: Path,
) -> None:
    (tmp_path / "greet.yaml").write_text(GREET_SPEC)
    registry = PipelineRegistry.with_builtins(tmp_path)
    assert registry.task_queue("research", "tidings") == "tidings"
    assert registry.task_queue("greet", "tidings") == "tidings.pipeline.greet"
    assert registry.task_queue("greet", "other") == dedicated_queue("other", "greet")
    assert registry.task_queues("tidings") == {
        "tidings": ["agent", "research"],
        "tidings.pipeline.greet": ["greet"],
    }
    # What the worker announces: each pipeline with the queue it polls for it.
    announced = {a.spec.name: a.task_queue for a in announcements_of(registry, "tidings")}
    assert announced == {
        "research": "tidings",
        "agent": "tidings",
        "greet": "tidings.pipeline.greet",
    }


def test_an_announcement_wins_over_a_local_copy_and_keeps_its_queue() -> None:
    registry = PipelineRegistry([RESEARCH, GREET])
    registry.register(GREET, task_queue="q.greet", replace=True)
    assert registry.task_queue("greet", "base") == "q.greet"
    with pytest.raises(SpecError, match="declared twice"):
        registry.register(GREET)
    clone = registry.copy()
    clone.register(GREET, replace=True)
    assert clone.task_queue("greet", "base") == "base"
    assert registry.task_queue("greet", "base") == "q.greet"  # the copy is its own


def test_announcements_round_trip_and_versions_follow_the_spec() -> None:
    item = Announcement(GREET, "tidings.pipeline.greet", "12@host")
    back = Announcement.from_json(item.to_json())
    assert back == item
    record = json.loads(item.to_json())
    assert record["version"] == spec_version(GREET) == item.version
    assert record["spec"]["steps"][0]["activity"] == "greet.hello"
    changed = load_spec({**GREET.model_dump(mode="json"), "description": "new"}, source="t")
    assert spec_version(changed) != spec_version(GREET)
    for junk in ("not json", "{}", '{"task_queue": "", "spec": {}}', '{"task_queue": "q"}'):
        with pytest.raises(SpecError):
            Announcement.from_json(junk)
    with pytest.raises(SpecError, match=r"steps: Field required"):
        Announcement.from_json('{"task_queue": "q", "spec": {"name": "x"}}')


def test_a_bad_folder_names_the_variable_the_file_and_the_field(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BAD_SPEC)
    with pytest.raises(SpecError) as error:
        load_dir(tmp_path)
    assert error.value.message.startswith(
        f"TIDINGS_WORKER_PIPELINES_DIR: {tmp_path / 'broken.yaml'}: invalid pipeline spec: "
        "steps[0].retry.max_attempts"
    )
    # `tidings up --pipelines` checks the folder before starting anything.
    args = argparse.Namespace(pipelines=tmp_path, activities=[])
    with pytest.raises(SpecError, match=r"broken\.yaml"):
        user_code(args)


def test_activities_import_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mysteps_unit.py").write_text("def activities(clients, settings):\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mysteps_unit", raising=False)
    factory = load_factory("mysteps_unit:activities")
    assert factory(None, None) == 1  # type: ignore[arg-type]


def test_tidings_up_passes_user_code_to_the_workers(tmp_path: Path) -> None:
    (tmp_path / "greet.yaml").write_text(GREET_SPEC)
    code = user_code(
        argparse.Namespace(pipelines=tmp_path, activities=["mysteps:activities", "b:c"])
    )
    assert code.argv() == ["--activities", "mysteps:activities", "--activities", "b:c"]
    env = code.env({"PYTHONPATH": "/x"})
    assert env["TIDINGS_WORKER_PIPELINES_DIR"] == str(tmp_path.resolve())
    assert env["PYTHONPATH"] == f"{Path.cwd()}:/x"
    assert UserCode().env({"A": "1"}) == {"A": "1"}
    assert UserCode().argv() == []


def test_tidings_pipelines_text() -> None:
    text = render(describe(GREET, "abc", "q.greet", announced=True))
    assert text.splitlines() == [
        "greet  (version abc, task queue q.greet)",
        "  steps: hello",
        "  input: (none)",
    ]
    lines = render(describe(RESEARCH, "v1", "tidings", announced=False)).splitlines()
    assert "  steps: plan -> search -> draft -> review -> final" in lines
    assert "  input.question: string, required, min length 1, max length 2000" in lines
    assert "  input.require_approval: boolean, optional, default false" in lines
