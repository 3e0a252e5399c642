"""Drive the stream's production paths one record or one frame at a time,
for unit tests: the tail fans out fetches and the socket writers drain
queues in batches, and a test wants to look between two steps."""

from __future__ import annotations

import contextlib

from aiokafka.structs import ConsumerRecord

from gateway.stream.frames import Frame
from gateway.stream.subscriber import Subscriber
from gateway.stream.tail import TenantTail


def dispatch(tail: TenantTail, partition: int, record: ConsumerRecord[bytes, bytes]) -> int:
    """Offer one record to the sockets of its run through the tail's fan-out,
    never pausing; how many sockets follow the run."""
    if record.key is None:
        return 0
    with contextlib.closing(tail._fan_out(partition, record.key, [record])) as steps:
        for _ in steps:
            pass
    return len(tail._subs.get(record.key.decode(errors="replace"), ()))


async def next_item(sub: Subscriber) -> Frame:
    """The next queued frame, taken off the queue as a socket's writer does."""
    await sub.readable()
    return sub.pop()
