"""The gateway supervisor's restart policy (gateway/supervisor.py)."""

from __future__ import annotations

import pytest

from gateway.supervisor import MAX_RESTART_DELAY, restart_delay

pytestmark = pytest.mark.unit


def test_a_steady_child_restarts_at_once_and_a_crash_loop_backs_off() -> None:
    assert restart_delay(0) == 0.0
    assert restart_delay(1) == 0.0
    delays = [restart_delay(n) for n in range(2, 12)]
    assert delays == sorted(delays) and delays[0] > 0
    assert max(delays) == MAX_RESTART_DELAY
