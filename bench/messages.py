"""The benchmark message: the same event for every system.

Tidings carries it as a schema-1 envelope (tidings.events.Event) on Kafka;
the peers carry a JSON object padded to the envelope's length, so every
system moves the same bytes plus its own framing. Every message holds
``"t_ns"`` (CLOCK_MONOTONIC at send, comparable across processes) and ``"n"``
(its index, for missing/duplicate checks).
"""

from __future__ import annotations

import hashlib
import json
import time

from tidings.events import Event

TENANT = "demo"
API_KEY = "dev-key-demo"


def envelope(run_id: str, n: int, t_ns: int | None = None) -> bytes:
    data = {"t_ns": time.monotonic_ns() if t_ns is None else t_ns, "n": n}
    return Event(
        type="step.token", tenant=TENANT, run_id=run_id, step="bench", attempt=1, seq=n, data=data
    ).to_bytes()


def fast_envelope(run_id: str, n: int, t_ns: int, ts: str) -> bytes:
    """The same bytes as :func:`envelope`, built from a template: the
    publisher must outrun the gateway, and Event() costs ~20 us."""
    event_id = event_id_of(run_id, n)
    return (
        f'{{"schema":1,"id":"{event_id}","type":"step.token","tenant":"{TENANT}",'
        f'"run_id":"{run_id}","step":"bench","attempt":1,"seq":{n},'
        f'"data":{{"t_ns":{t_ns},"n":{n}}},"ts":"{ts}"}}'
    ).encode()


def event_id_of(run_id: str, n: int) -> str:
    material = "\x1f".join((run_id, "bench", "1", "step.token", str(n)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


_SAMPLE_RUN = "demo-" + "0" * 32
ENVELOPE_BYTES = len(envelope(_SAMPLE_RUN, 12345, 10**18))


def peer_message(channel: str, n: int, t_ns: int | None = None) -> str:
    """A JSON object as long as a Tidings envelope of the same event."""
    head = json.dumps(
        {"t_ns": time.monotonic_ns() if t_ns is None else t_ns, "n": n, "ch": channel},
        separators=(",", ":"),
    )
    pad = max(0, ENVELOPE_BYTES - len(head) - len(',"pad":""'))
    return head[:-1] + ',"pad":"' + "x" * pad + '"}'
