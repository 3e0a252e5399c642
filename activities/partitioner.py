"""The emitter's partitioner: aiokafka's default choice, with each key's hash kept.

A record's key is its run id, so a partition follows from the run (the
ordering guarantee clients rely on, docs/protocol.md). aiokafka's default
partitioner computes murmur2 in pure Python for every record, about a tenth
of a token's CPU in the emitter; a run streams thousands of tokens under one
key, so the hash is kept per key. The partition is still taken modulo the
topic's partitions as the producer's metadata has them on each call, exactly
as the default does, so a topic given more partitions is followed the same
way.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

# Keys whose hash is kept (a run id is about 40 bytes); the whole cache is
# dropped when full: finished runs' keys are never asked for again.
_KEYS_KEPT = 4096


class KeyHashPartitioner:
    """``partitioner`` for ``AIOKafkaProducer``: the default partition for a key,
    its murmur2 hash computed once per key."""

    def __init__(self, size: int = _KEYS_KEPT) -> None:
        self._size = size
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: list[int]
    ) -> int:
        if key is None:
            return int(self._default(key, list(all_partitions), available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
