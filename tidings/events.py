"""The event envelope (schema 1): one Kafka record per event, key = run id.

The envelope is the contract between every plane: activities build it, Kafka
keeps it, gateways forward it byte for byte, clients read it. Fields are only
ever added, with defaults; a breaking change bumps ``schema`` and readers keep
accepting the old one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMAS: Final = frozenset({1})

# One encoder for every envelope (json.dumps with options builds one a call).
_WIRE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class EventType:
    """Event ``type`` values. Clients must ignore types they do not know."""

    RUN_STARTED = "run.started"
    RUN_WAITING = "run.waiting"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_CONTINUED = "run.continued"
    # Written by the run-close watcher for runs closed outside the workflow.
    RUN_TERMINATED = "run.terminated"
    RUN_TIMED_OUT = "run.timed_out"
    STEP_STARTED = "step.started"
    STEP_PROGRESS = "step.progress"
    STEP_TOKEN = "step.token"
    STEP_COMPLETED = "step.completed"
    STEP_RETRYING = "step.retrying"
    STEP_FAILED = "step.failed"
    STEP_REQUESTED = "step.requested"
    # Agent steps (activities/agent): reasoning, a tool call and its (cut) return.
    STEP_THINKING = "step.thinking"
    STEP_TOOL_CALL = "step.tool_call"
    STEP_TOOL_RESULT = "step.tool_result"
    ALERT_HOT_LOOP = "alert.hot_loop"

    TERMINAL = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED, RUN_TERMINATED, RUN_TIMED_OUT})


class EnvelopeError(ValueError):
    """A record that is not a readable envelope; it belongs in the DLQ."""


def event_id(run_id: str, step: str | None, attempt: int, type_: str, seq: int) -> str:
    """The deterministic id of one logical event.

    The same (run, step, attempt, type, seq) always hashes to the same id, so a
    retried emit or a redelivered record is recognisable as the same event.
    """
    material = "\x1f".join((run_id, step or "", str(attempt), type_, str(seq)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One progress event.

    Attributes:
        type: what happened, one of :class:`EventType` (or a newer one).
        tenant: owner of the run; decides the topic and who may read it.
        run_id: the Temporal workflow id of the run.
        step: the pipeline step, ``None`` for ``run.*`` events.
        attempt: the activity attempt that produced the event (1-based); a
            client discards a step's partial output when it sees
            ``step.retrying`` for that attempt.
        seq: monotonic within (run_id, step, attempt).
        data: type-specific payload (JSON object).
        id: deterministic id (see :func:`event_id`); computed when empty.
        ts: emit time, ISO 8601 UTC with milliseconds.
        schema: envelope version.
    """

    type: str
    tenant: str
    run_id: str
    step: str | None
    attempt: int
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    ts: str = ""
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", event_id(self.run_id, self.step, self.attempt, self.type, self.seq)
            )
        if not self.ts:
            object.__setattr__(self, "ts", utc_now_iso())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # The wire order puts identity first; readers must not depend on it.
        return {"schema": out.pop("schema"), "id": out.pop("id"), **out}

    def to_bytes(self) -> bytes:
        # The wire order of to_dict without its deep copy (dataclasses.asdict
        # copies data down to the leaves: most of an encode's CPU, paid for
        # every token). The bytes are the same; data json cannot encode as it
        # is (a dataclass in it, which asdict turns into a dict) goes the
        # copying way.
        wire = {
            "schema": self.schema,
            "id": self.id,
            "type": self.type,
            "tenant": self.tenant,
            "run_id": self.run_id,
            "step": self.step,
            "attempt": self.attempt,
            "seq": self.seq,
            "data": self.data,
            "ts": self.ts,
        }
        try:
            return _WIRE.encode(wire).encode()
        except (TypeError, ValueError):
            return _WIRE.encode(self.to_dict()).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("id", self.id.encode()),
            ("type", self.type.encode()),
            ("tenant", self.tenant.encode()),
        ]

    @property
    def is_terminal(self) -> bool:
        return self.type in EventType.TERMINAL

    @classmethod
    def from_dict(cls, raw: Any) -> Event:
        if not isinstance(raw, dict):
            raise EnvelopeError("envelope must be a JSON object")
        schema = raw.get("schema")
        if schema not in SUPPORTED_SCHEMAS:
            raise EnvelopeError(f"unsupported envelope schema {schema!r}")
        try:
            step = raw.get("step")
            event = cls(
                type=_str(raw, "type"),
                tenant=_str(raw, "tenant"),
                run_id=_str(raw, "run_id"),
                step=None if step is None else str(step),
                attempt=_int(raw, "attempt"),
                seq=_int(raw, "seq"),
                data=raw.get("data") or {},
                id=_str(raw, "id"),
                ts=_str(raw, "ts"),
                schema=int(schema),
            )
        except (KeyError, TypeError) as exc:
            raise EnvelopeError(f"bad envelope field: {exc}") from None
        if not isinstance(event.data, dict):
            raise EnvelopeError("envelope data must be a JSON object")
        return event

    @classmethod
    def from_bytes(cls, payload: bytes) -> Event:
        try:
            raw = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        return cls.from_dict(raw)


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} must be a non-empty string")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key} must be a non-negative integer")
    return value
