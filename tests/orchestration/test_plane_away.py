"""An attempt ended by the event plane does not count against the step's retries.

``test.fails_then_plane_away`` fails on its own at attempt 1 and, at attempt
2, ends the way ``activities.steps`` ends an attempt Kafka kept waiting for
its whole time (``TidingsEventPlaneUnavailable``). The step allows 2 attempts:
counted, the run would fail; uncounted, attempt 3 runs and completes. The
real outage is tests/reliability/test_event_plane_outage.py.
"""

from __future__ import annotations

import pytest

from tests.orchestration.harness import Harness, assert_well_formed, logical, run_events
from tidings.events import EventType

pytestmark = pytest.mark.integration


async def test_an_attempt_ended_by_the_event_plane_is_not_counted(harness: Harness) -> None:
    run_id, _ = await harness.start("plane-away", {})
    result = await harness.result(run_id)
    assert result.output == {"attempt": 3}
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    flaky = [e for e in logical(events) if e.step == "flaky"]
    assert [e.attempt for e in flaky if e.type == EventType.STEP_STARTED] == [1, 2, 3]
    assert [e.attempt for e in flaky if e.type == EventType.STEP_RETRYING] == [1, 2]
    assert EventType.STEP_FAILED not in {e.type for e in flaky}
    assert events[-1].type == EventType.RUN_COMPLETED
