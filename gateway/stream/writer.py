"""One socket's writes to its direct sink, held or straight.

A frame the subscriber sends without queueing it goes to the socket's
:class:`~gateway.server.sink.FrameSink` through this writer. While the tail's
dispatch slice is open (its :class:`~gateway.stream.cork.Cork`), frames are
held and the cork has the writer send them together when the slice ends; at
other times they are written at once. Either way they are the transport's
from here on, so the writer only takes a frame while the transport is below
its high-water mark, and holds at most one transport buffer's worth.
"""

from __future__ import annotations

from gateway.server.sink import FrameSink

from .cork import Cork

# What a socket may hold during a slice before it is written anyway: the
# transport's default high-water mark.
HOLD_MAX_BYTES = 64 * 1024


class FrameWriter:
    __slots__ = ("_cork", "_held_bytes", "_sink", "held")

    def __init__(self, sink: FrameSink, cork: Cork | None = None) -> None:
        self._sink = sink
        self._cork = cork
        self.held: list[bytes] = []  # written when the slice ends (``flush``)
        self._held_bytes = 0

    def write(self, wire: bytes) -> bool:
        """Take one whole frame if the transport has room; False if it has
        none or the socket is closing (the caller queues it or gives up)."""
        sink = self._sink
        if not sink.writable:
            return False
        cork = self._cork
        if cork is None or not cork.open:
            return sink.write(wire)
        if not self.held:
            cork.hold(self)
        self.held.append(wire)
        self._held_bytes += len(wire)
        if self._held_bytes >= HOLD_MAX_BYTES:
            self.flush()  # a transport buffer's worth: no point holding more
        return True

    def write_now(self, wires: list[bytes]) -> bool:
        """Write ``wires`` at once (one ``writev``), held frames or not, if the
        transport has room; else False and nothing written. The caller
        checks that nothing is held ahead of them."""
        return self._sink.write_if_writable(wires)

    def flush(self) -> None:
        """Send what was held (the cork calls this when the slice ends)."""
        if self.held:
            held, self.held, self._held_bytes = self.held, [], 0
            # False: the socket is closing, and its reader will say so.
            self._sink.write_many(held)

    def drop(self) -> None:
        """Forget what was held: the socket failed, and nothing more goes out."""
        self.held, self._held_bytes = [], 0
