"""What one O1 socket received, token by token (bench/loadgen.py ``--tally``).

O1's question is not only how fast tokens arrive but whether each socket got
the run's every token once, in order, before ``end``: a socket that got
``end`` (or close 1000) short of its tokens is a delivery fault, one still
open and short at the deadline is only behind. So each socket's frames are
read for the token's attempt and number (``n``, 0.. in emit order, from
bench/emit_steps.py) and for the ``end`` frame.

A retried step emits its tokens again under the next attempt, from n = 0,
after ``step.retrying`` told clients to discard the earlier attempt
(docs/protocol.md): tokens are kept for the latest attempt only, as a client
applying that rule does; the earlier ones are counted as discarded.
"""

from __future__ import annotations

import re
from typing import Any

T_NS = re.compile(rb'"t_ns":(\d+)')
N = re.compile(rb'"n":(\d+)')
ATTEMPT = re.compile(rb'"attempt":(\d+)')
END = b'{"kind":"end"'


class Tally:
    __slots__ = (
        "after_end",
        "attempt",
        "attempts",
        "discarded",
        "disorder",
        "emit_late_ns",
        "end_ns",
        "kept",
        "kept_at_end",
        "last_token_ns",
        "next_n",
        "period_ns",
        "start_ns",
    )

    def __init__(self) -> None:
        self.attempt = 0
        self.kept = 0  # tokens of the latest attempt, in order
        self.next_n = 0
        self.discarded = 0  # tokens of attempts a later one replaced
        self.disorder = 0  # tokens whose n was not the next one (gap, repeat)
        self.attempts = 0
        self.end_ns = 0  # when ``end`` arrived; 0: not (yet)
        self.kept_at_end = -1
        self.after_end = 0  # tokens after ``end``: a fault too
        self.last_token_ns = 0
        # How late the worker emitted the latest token against the schedule
        # (start + n / rate): lateness before Kafka, not delivery.
        self.emit_late_ns = 0
        self.start_ns = 0
        self.period_ns = 0

    def schedule(self, start_ns: int, rate: float) -> None:
        self.start_ns, self.period_ns = start_ns, int(1e9 / rate) if rate > 0 else 0

    def see(self, buf: bytes, start: int, end: int, now_ns: int) -> None:
        """One text frame's payload, ``buf[start:end]``."""
        sent = T_NS.search(buf, start, end)
        if sent is None:
            if buf.startswith(END, start):
                self.end_ns, self.kept_at_end = now_ns, self.kept
            return
        n_match, attempt_match = N.search(buf, start, end), ATTEMPT.search(buf, start, end)
        n = int(n_match.group(1)) if n_match else -1
        attempt = int(attempt_match.group(1)) if attempt_match else 1
        if self.end_ns:
            self.after_end += 1
        if attempt > self.attempt:
            self.discarded += self.kept
            self.attempt, self.kept, self.next_n = attempt, 0, 0
            self.attempts += 1
        elif attempt < self.attempt:
            self.discarded += 1
            return
        if n != self.next_n:
            self.disorder += 1
        self.kept += 1
        self.next_n = n + 1
        self.last_token_ns = now_ns
        if self.period_ns and n >= 0:
            late = int(sent.group(1)) - (self.start_ns + n * self.period_ns)
            self.emit_late_ns = max(self.emit_late_ns, late)

    def report(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "discarded": self.discarded,
            "disorder": self.disorder,
            "attempts": self.attempts,
            "end_ns": self.end_ns,
            "kept_at_end": self.kept_at_end,
            "after_end": self.after_end,
            "last_token_ns": self.last_token_ns,
            "emit_late_ns": self.emit_late_ns,
        }


def summarise(
    sockets: list[dict[str, Any]], expect: int, start_ns: int, cut_ns: int
) -> dict[str, Any]:
    """Sockets' reports (``Tally.report`` plus ``closed``, ``close_code`` and
    ``kept_at_cut``) as O1's delivery figures. ``cut_ns``: where the old
    fixed window ended, to say how far behind sockets were there."""
    complete = [s for s in sockets if s["kept"] == expect and not s["disorder"]]
    ended = [s for s in sockets if s["end_ns"]]
    # The fault O1 must rule out: ``end`` (or a normal close) short of tokens.
    ended_early = [
        s
        for s in sockets
        if (s["end_ns"] and s["kept_at_end"] < expect)
        or (s["close_code"] == 1000 and s["kept"] < expect)
    ]
    codes: dict[str, int] = {}
    for s in sockets:
        if s["closed"]:
            key = str(s["close_code"])
            codes[key] = codes.get(key, 0) + 1
    still_open = [s for s in sockets if not s["closed"]]
    short_open = [expect - s["kept"] for s in still_open if s["kept"] < expect]
    behind_at_cut = sorted(expect - s["kept_at_cut"] for s in sockets if s["kept_at_cut"] < expect)
    ends = [s["end_ns"] for s in ended]
    lasts = [s["last_token_ns"] for s in sockets if s["last_token_ns"]]
    emit_late = sorted(s["emit_late_ns"] for s in sockets)

    def seconds(ns: int) -> float:
        return round((ns - start_ns) / 1e9, 1)

    return {
        "sockets": len(sockets),
        "complete_sockets": len(complete),
        "ended_sockets": len(ended),
        "ended_early": len(ended_early),
        "tokens_after_end": sum(s["after_end"] for s in sockets),
        "out_of_order": sum(s["disorder"] for s in sockets),
        "retried_sockets": sum(1 for s in sockets if s["attempts"] > 1),
        "discarded_tokens": sum(s["discarded"] for s in sockets),
        "close_codes": codes,
        "open_at_deadline": len(still_open),
        "open_short": len(short_open),
        "open_short_tokens_max": max(short_open, default=0),
        "behind_at_cut": len(behind_at_cut),
        "behind_at_cut_tokens": sum(behind_at_cut),
        "behind_at_cut_max": behind_at_cut[-1] if behind_at_cut else 0,
        "behind_at_cut_median": behind_at_cut[len(behind_at_cut) // 2] if behind_at_cut else 0,
        "last_end_s": seconds(max(ends)) if ends else None,
        "last_token_s": seconds(max(lasts)) if lasts else None,
        "emit_late_p50_ms": round(emit_late[len(emit_late) // 2] / 1e6) if emit_late else 0,
        "emit_late_max_ms": round(emit_late[-1] / 1e6) if emit_late else 0,
    }
