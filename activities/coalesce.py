"""Token coalescing: while a tenant's events lag, a step's ``step.token``
events are merged into fewer, larger records.

Under lag every record costs the gateways a read, a frame and a socket write
per watcher; one record holding twenty tokens costs the same as one holding
one. So while the tenant's lag (``tidings.lag``) is at or above
``TIDINGS_TENANTS_COALESCE_LAG``, a step buffers its tokens up to
``TIDINGS_WORKER_COALESCE_MAX_MS`` or ``..._MAX_BYTES`` and sends them as one
``step.token`` whose ``data`` is ``{"text": <the tokens joined>, "tokens": n}``.
It returns to one record per token once the lag falls below half the
threshold (hysteresis, so a lag hovering at the threshold does not flap).

A coalesced record is an ordinary event of its attempt: it takes the next
``seq`` of the attempt's counter and its id is derived from that seq like any
other, so ids stay deterministic and seqs monotonic; clients that only read
``data.text`` see the same text, in fewer pieces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CoalescePolicy:
    lag_threshold: int
    max_ms: int = 100
    max_bytes: int = 4096

    @property
    def lag_release(self) -> int:
        return self.lag_threshold // 2


class TokenBuffer:
    """Tokens waiting to go out as one record."""

    def __init__(self, policy: CoalescePolicy) -> None:
        self.policy = policy
        self.parts: list[str] = []
        self.size = 0
        self.started = 0.0

    def add(self, text: str) -> None:
        if not self.parts:
            self.started = time.monotonic()
        self.parts.append(text)
        self.size += len(text.encode())

    @property
    def full(self) -> bool:
        return self.size >= self.policy.max_bytes or self.age_ms() >= self.policy.max_ms

    def age_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000 if self.parts else 0.0

    def remaining_seconds(self) -> float:
        return max(0.0, (self.policy.max_ms - self.age_ms()) / 1000)

    def take(self) -> tuple[str, int]:
        text, count = "".join(self.parts), len(self.parts)
        self.parts, self.size = [], 0
        return text, count
