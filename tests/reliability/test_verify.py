"""The checker itself: it must see a lost, a repeated and a reordered event,
and an attempt a client failed to discard (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import verify
from tests.reliability.verify import Watch, check, draft_text, undiscarded_attempts
from tidings.events import Event, EventType


def _run() -> list[Event]:
    run = "t-run"
    return [
        Event(EventType.RUN_STARTED, "t", run, None, 1, 0),
        Event(EventType.STEP_STARTED, "t", run, "draft", 1, 0),
        Event(EventType.STEP_TOKEN, "t", run, "draft", 1, 1, {"text": "stale "}),
        Event(EventType.STEP_RETRYING, "t", run, "draft", 1, 1_000_000_000),
        Event(EventType.STEP_STARTED, "t", run, "draft", 2, 0),
        Event(EventType.STEP_TOKEN, "t", run, "draft", 2, 1, {"text": "fresh"}),
        Event(EventType.STEP_COMPLETED, "t", run, "draft", 2, 2),
        Event(EventType.RUN_COMPLETED, "t", run, None, 1, 0),
    ]


def _watch(events: list[Event]) -> Watch:
    watch = Watch("t-run", status="COMPLETED")
    watch.seen = [(float(i), e) for i, e in enumerate(events)]
    return watch


def test_a_faithful_client_passes() -> None:
    events = _run()
    topic = {"t-run": events + events[2:4]}  # duplicate records in the topic are fine
    tally = check([_watch(events)], topic, {"t-run": "fresh"})
    assert not tally.problems and tally.records == len(events) + 2
    assert draft_text(events) == "fresh"


def test_lost_repeated_and_reordered_events_are_caught() -> None:
    events = _run()
    topic = {"t-run": events}
    lost = check([_watch(events[:2] + events[3:])], topic)
    repeated = check([_watch(events[:3] + events[2:])], topic)
    reordered = check([_watch([events[1], events[0], *events[2:]])], topic)
    assert (lost.lost, repeated.duplicated, reordered.out_of_order) == (1, 1, 1)
    assert lost.problems and repeated.problems and reordered.problems


def test_an_undiscarded_attempt_is_caught_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "RESULTS", tmp_path / "reliability.json")  # the dump goes here
    events = [e for e in _run() if e.type != EventType.STEP_RETRYING]
    tally = check([_watch(events)], {"t-run": events}, {"t-run": "fresh"})
    assert undiscarded_attempts(events) == [("draft", 1)]
    assert tally.undiscarded_attempts == tally.text_mismatches == 1
    assert "attempts left undiscarded: [('draft', 1)]" in tally.problems[0]
    unexplained = check([_watch(events)], {"t-run": events}, {"t-run": "something else"})
    assert unexplained.text_mismatches == 1


def test_repeated_and_several_retrying_events_discard_each_attempt() -> None:
    run = "t-run"
    events = _run()
    # Attempt 2 died before its first emit; attempt 3 announces 1 again (same id) and 2.
    again = Event(EventType.STEP_RETRYING, "t", run, "draft", 1, 1_000_000_000)
    events[4:] = [
        Event(EventType.STEP_STARTED, "t", run, "draft", 2, 0),
        Event(EventType.STEP_TOKEN, "t", run, "draft", 2, 1, {"text": "dead "}),
        again,
        Event(EventType.STEP_RETRYING, "t", run, "draft", 2, 1_000_000_000),
        Event(EventType.STEP_STARTED, "t", run, "draft", 3, 0),
        Event(EventType.STEP_TOKEN, "t", run, "draft", 3, 1, {"text": "fresh"}),
        Event(EventType.STEP_COMPLETED, "t", run, "draft", 3, 2),
        Event(EventType.RUN_COMPLETED, "t", run, None, 1, 0),
    ]
    assert again.id == events[3].id
    client = verify.logical(events)  # what the client library yields: repeats dropped by id
    tally = check([_watch(client)], {"t-run": events}, {"t-run": "fresh"})
    assert not tally.problems and tally.retried_attempts == 2
    assert draft_text(client) == draft_text(events) == "fresh"
    assert undiscarded_attempts(client) == []
