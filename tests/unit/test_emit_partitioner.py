"""The one partitioner (tidings.kafka_log) picks aiokafka's default partition for every key."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tidings.kafka_log import KeyHashPartitioner

pytestmark = pytest.mark.unit


def test_each_key_gets_the_default_partition_for_any_partition_count() -> None:
    default, kept = DefaultPartitioner(), KeyHashPartitioner(size=8)
    keys = [f"demo-{uuid.uuid4().hex}".encode() for _ in range(50)] + [b"", b"a", b"ab", b"abc"]
    for count in (1, 3, 6, 7, 12):
        partitions = list(range(count))
        for key in keys + keys:  # the second round from the kept hashes (some dropped)
            assert kept(key, partitions, partitions) == default(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert KeyHashPartitioner()(None, [0, 1, 2], [2]) == 2
