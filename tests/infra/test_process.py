"""Process identity and the state folder: the rules that keep `down` from hurting bystanders."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from infra.errors import StackError
from infra.layout import MARKER, Layout
from infra.process import ProcessRecord, is_ours, proc_start_time, spawn, terminate
from infra.services.kafka import new_cluster_id
from tests.support import wait_until

pytestmark = pytest.mark.unit


def test_a_process_is_ours_only_while_pid_start_time_and_cmdline_match(tmp_path: Path) -> None:
    child = spawn("sleeper", ["sleep", "60"], log=tmp_path / "s.log", pid_file=tmp_path / "s.json")
    record = ProcessRecord.load(tmp_path / "s.json")
    assert record == child.record and is_ours(record)
    recycled = replace(record, start_time=record.start_time + 1)
    renamed = replace(record, cmdline=("sleep", "61"))
    assert not is_ours(recycled) and not is_ours(renamed)
    assert terminate(recycled, grace=1, popen=None) == "not running"
    assert terminate(renamed, grace=1, popen=None) == "not running"
    assert child.exit_code() is None  # neither impostor record got it signalled
    assert terminate(record, grace=5, popen=child.popen) == "stopped"
    assert proc_start_time(record.pid) is None


def test_terminate_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    argv = ["sh", "-c", "trap '' TERM; echo ready; sleep 60"]
    child = spawn("stubborn", argv, log=tmp_path / "s.log", pid_file=tmp_path / "s.json")
    wait_until(lambda: b"ready" in (tmp_path / "s.log").read_bytes(), 10, "the trap is set")
    assert terminate(child.record, grace=0.3, popen=child.popen) == "killed"


def test_unreadable_pid_file_is_no_record(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{half")
    (tmp_path / "b.json").write_text(json.dumps({"pid": 1}))
    assert ProcessRecord.load(tmp_path / "a.json") is None
    assert ProcessRecord.load(tmp_path / "b.json") is None
    assert ProcessRecord.load(tmp_path / "missing.json") is None


def test_spawn_failure_is_a_stack_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="cannot start ghost"):
        spawn("ghost", [str(tmp_path / "nope")], log=tmp_path / "g.log", pid_file=tmp_path / "g")


def test_state_dir_is_claimed_once_and_foreign_ones_refused(tmp_path: Path) -> None:
    fresh = Layout(tmp_path / "new")
    fresh.claim()
    fresh.claim()  # idempotent
    assert (fresh.root / MARKER).is_file() and fresh.is_claimed()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(StackError, match="did not create"):
        Layout(foreign).claim()
    (foreign / MARKER).write_text("forged")
    with pytest.raises(StackError, match="did not create"):
        Layout(foreign).claim()

    file_instead = tmp_path / "file"
    file_instead.write_text("")
    with pytest.raises(StackError, match="is a file"):
        Layout(file_instead).claim()


def test_kafka_cluster_ids_have_kafkas_own_format() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_process_not_started_by_us_is_left_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        start = proc_start_time(bystander.pid)
        assert start is not None
        record = ProcessRecord("redis", bystander.pid, start, ("redis-server",), "")
        assert terminate(record, grace=1, popen=None) == "not running"
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_one_up_or_down_at_a_time_per_state_dir(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state")
    layout.claim()
    busy = pytest.raises(StackError, match="another `tidings up` or `tidings down`")
    with layout.exclusive(), busy, Layout(layout.root).exclusive():
        pass
    with layout.exclusive():  # released on exit
        pass
