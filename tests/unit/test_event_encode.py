"""Event.to_bytes skips to_dict's deep copy and writes the very same bytes."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pytest

from tidings.events import Event, EventType

pytestmark = pytest.mark.unit


@dataclass
class Point:
    x: int
    tags: tuple[str, ...]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"text": 'héllo \u2603 "quoted"\n', "n": 3, "f": 0.1, "ok": True, "none": None},
        {"nested": {"list": [1, [2, {"deep": "x"}]], "tuple": (1, "a")}, 7: "int key"},
        OrderedDict([("b", 1), ("a", 2)]),
        {"point": Point(1, ("a", "b")), "points": [Point(2, ())]},
        {"nan": float("nan"), "big": 10**30},
    ],
    ids=["empty", "scalars", "nested", "ordered", "dataclasses", "odd-numbers"],
)
def test_the_bytes_are_those_of_the_copying_encode(data: dict[str, Any]) -> None:
    event = Event(
        type=EventType.STEP_TOKEN, tenant="t", run_id="t-run", step="s", attempt=2, seq=9, data=data
    )
    copied = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    assert event.to_bytes() == copied
    assert Event.from_bytes(event.to_bytes()).id == event.id
