"""Direct writes made during one dispatch slice of the live tail, sent together.

A fetched batch often holds several records for one socket (a run streams
tokens in bursts; with a thousand sockets on a run, every record is for all of
them). Writing each frame as it is offered costs a system call per frame per
socket; holding them until the slice ends and handing each socket's frames to
its transport at once (``writelines``: one ``writev``) costs one per socket.
The tail flushes before every await, so no other task ever sees a socket with
frames held: order with the socket's queue and control frames is kept.
"""

from __future__ import annotations

from typing import Protocol


class Holder(Protocol):
    def flush(self) -> None: ...


class Cork:
    __slots__ = ("_held", "open")

    def __init__(self) -> None:
        self.open = False  # True while the tail dispatches: writes are held
        self._held: list[Holder] = []

    def hold(self, holder: Holder) -> None:
        """``holder`` has frames held (called on its first)."""
        self._held.append(holder)

    def flush(self) -> None:
        """Close the slice and send every held frame."""
        self.open = False
        held, self._held = self._held, []
        for holder in held:
            holder.flush()
