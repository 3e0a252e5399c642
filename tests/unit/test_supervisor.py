"""The gateway supervisor's restart policy (gateway/server/supervisor.py)."""

from __future__ import annotations

import pytest

from gateway.server.supervisor import (
    MAX_EARLY_DEATHS,
    MAX_RESTART_DELAY,
    STEADY_SECONDS,
    Slot,
    Supervisor,
    restart_delay,
)

pytestmark = pytest.mark.unit


def test_a_steady_child_restarts_at_once_and_a_crash_loop_backs_off() -> None:
    assert restart_delay(0) == 0.0
    assert restart_delay(1) == 0.0
    delays = [restart_delay(n) for n in range(2, 12)]
    assert delays == sorted(delays) and delays[0] > 0
    assert max(delays) == MAX_RESTART_DELAY


class Exited:
    """A child process that has exited with ``code``."""

    pid = 4242

    def __init__(self, code: int) -> None:
        self.code = code

    def poll(self) -> int:
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recording(Supervisor):
    """Starts nothing: records which slots it would start, and when."""

    def __init__(self, slots: list[Slot], clock: Clock) -> None:
        super().__init__(slots, stop_seconds=1, clock=clock)
        self.starts: list[tuple[int, float]] = []
        self.clock = clock

    def _start(self, slot: Slot) -> None:
        self.starts.append((slot.index, self.clock.now))
        slot.started = self.clock.now
        slot.process = Exited(1)  # type: ignore[assignment]


def test_a_child_that_lived_is_replaced_at_once_and_one_dying_at_start_stops_all() -> None:
    clock = Clock()
    slot = Slot(0, (3,), ["gateway"])
    supervisor = Recording([slot], clock)
    supervisor._start(slot)
    clock.now += STEADY_SECONDS  # it served for a while, then died
    assert supervisor._tend()
    assert slot.process is None and slot.early_deaths == 0
    assert supervisor._tend()  # restarted in the same pass of the loop after
    assert supervisor.starts[-1] == (0, clock.now)
    # From now on it dies right after every start.
    for _ in range(MAX_EARLY_DEATHS - 1):
        clock.now += 0.1
        assert supervisor._tend()  # noticed and scheduled
        clock.now = slot.restart_at
        assert supervisor._tend()  # restarted after its back-off
    clock.now += 0.1
    assert not supervisor._tend()  # gives up
    assert len(supervisor.starts) == MAX_EARLY_DEATHS + 1
