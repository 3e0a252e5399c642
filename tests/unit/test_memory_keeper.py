"""When the gateway's memory keeper cleans up, with RSS, collection and trim faked."""

from __future__ import annotations

import pytest

from gateway.server.memory import MemoryKeeper, malloc_trim, rss_bytes

pytestmark = pytest.mark.unit

MIB = 2**20


class Process:
    def __init__(self, rss: int) -> None:
        self.rss = rss
        self.collections = 0
        self.trims = 0
        self.freed_by_cleanup = 0

    def read(self) -> int:
        return self.rss

    def collect(self) -> int:
        self.collections += 1
        self.rss -= self.freed_by_cleanup
        return 7

    def trim(self) -> None:
        self.trims += 1


def _keeper(process: Process) -> MemoryKeeper:
    return MemoryKeeper(30, 32 * MIB, rss=process.read, trim=process.trim, collect=process.collect)


def test_growth_below_the_threshold_costs_nothing() -> None:
    process = Process(100 * MIB)
    keeper = _keeper(process)
    process.rss = 131 * MIB
    assert not keeper.check()
    assert (process.collections, process.trims) == (0, 0)


def test_growth_past_the_threshold_collects_and_trims_once_it_stops() -> None:
    process = Process(100 * MIB)
    keeper = _keeper(process)
    process.rss, process.freed_by_cleanup = 140 * MIB, 20 * MIB
    assert not keeper.check()  # grew 40 MiB since the last look: mid-burst
    assert process.collections == 0
    assert keeper.check()  # no further growth: the burst is over
    assert (process.collections, process.trims, keeper.cleanups) == (1, 1, 1)
    # Measured again from what the clean-up left (120), not from the start.
    assert not keeper.check()
    process.rss = 151 * MIB
    assert not keeper.check()
    process.rss = 152 * MIB
    assert keeper.check()  # 1 MiB since the last look: not growing any more


def test_growth_is_measured_from_the_lowest_point() -> None:
    process = Process(100 * MIB)
    keeper = _keeper(process)
    process.rss = 80 * MIB
    assert not keeper.check()
    process.rss = 115 * MIB
    assert not keeper.check()
    assert keeper.check()


def test_this_process_can_be_measured_and_trimmed() -> None:
    assert rss_bytes() > 10 * MIB
    trim = malloc_trim()
    assert trim is not None  # glibc here; None only where the C library lacks it
    trim()
