"""The event envelope is the contract between every plane: pin its wire form."""

from __future__ import annotations

import json

import pytest

from tidings.events import EnvelopeError, Event, EventType, event_id

pytestmark = pytest.mark.unit


def _event(**overrides: object) -> Event:
    fields: dict[str, object] = {
        "type": EventType.STEP_TOKEN,
        "tenant": "acme",
        "run_id": "acme-1",
        "step": "draft",
        "attempt": 2,
        "seq": 7,
        "data": {"text": "héllo"},
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


def test_id_is_deterministic_and_distinguishes_every_identity_field() -> None:
    base = _event()
    assert base.id == _event(ts="2020-01-01T00:00:00.000Z").id
    variants = [
        _event(run_id="acme-2"),
        _event(step="plan"),
        _event(step=None),
        _event(attempt=3),
        _event(type=EventType.STEP_PROGRESS),
        _event(seq=8),
    ]
    assert len({base.id, *(v.id for v in variants)}) == 1 + len(variants)


def test_id_does_not_collide_when_fields_shift_characters() -> None:
    # A naive concatenation would make ("a-1", "b") and ("a", "-1b") the same id.
    assert event_id("a-1", "b", 1, "t", 1) != event_id("a", "-1b", 1, "t", 1)


def test_wire_form_has_every_contract_field_and_round_trips() -> None:
    event = _event()
    raw = json.loads(event.to_bytes())
    assert list(raw)[:2] == ["schema", "id"]
    assert set(raw) == {
        "schema",
        "id",
        "type",
        "tenant",
        "run_id",
        "step",
        "attempt",
        "seq",
        "ts",
        "data",
    }
    assert raw["schema"] == 1
    assert raw["ts"].endswith("Z")
    assert Event.from_bytes(event.to_bytes()) == event


def test_headers_repeat_id_type_and_tenant() -> None:
    event = _event()
    assert dict(event.headers()) == {
        "id": event.id.encode(),
        "type": b"step.token",
        "tenant": b"acme",
    }


def test_readers_ignore_fields_added_later() -> None:
    raw = json.loads(_event().to_bytes())
    raw["trace_id"] = "abc"
    assert Event.from_dict(raw).seq == 7


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(schema=2), "unsupported envelope schema"),
        (lambda r: r.pop("run_id"), "run_id"),
        (lambda r: r.update(attempt=-1), "attempt"),
        (lambda r: r.update(seq=True), "seq"),
        (lambda r: r.update(data=[1]), "data"),
        (lambda r: r.update(tenant=""), "tenant"),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(mutate: object, message: str) -> None:
    raw = json.loads(_event().to_bytes())
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(EnvelopeError, match=message):
        Event.from_dict(raw)


def test_non_json_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        Event.from_bytes(b"\xff\x00")


def test_terminal_types() -> None:
    assert _event(type=EventType.RUN_COMPLETED, step=None).is_terminal
    assert not _event().is_terminal
