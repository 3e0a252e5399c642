"""The Python reducer on the shared recorded streams (clients/fixtures/): the
JavaScript client's ``npm test`` runs the same files, so both agree."""

from __future__ import annotations

import copy
import json
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from tidings.run_state import initial_run_state, reduce_run, visible

pytestmark = pytest.mark.unit

FIXTURES = sorted((Path(__file__).parents[2] / "clients" / "fixtures").glob("*.json"))


def load(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = json.loads(path.read_text())
    return body["events"], body["expected"]


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 5


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture(path: Path) -> None:
    events, expected = load(path)
    assert visible(reduce(reduce_run, events, initial_run_state())) == expected


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_pure_and_safe_against_repeats_and_resumes(path: Path) -> None:
    events, expected = load(path)
    state = initial_run_state()
    for event in events:
        before = copy.deepcopy(state)
        new = reduce_run(state, event)
        assert state == before  # never changed in place
        state = new
    doubled = [e for event in events for e in (event, event)]
    assert visible(reduce(reduce_run, doubled, initial_run_state())) == expected
    for cut in range(len(events) + 1):
        saved = json.loads(json.dumps(reduce(reduce_run, events[:cut], initial_run_state())))
        resumed = reduce(reduce_run, events[max(0, cut - 3) :], saved)
        assert visible(resumed) == expected, cut
