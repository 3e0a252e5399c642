"""Request and response bodies of the REST API (they are the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Pipeline names are registry keys; this keeps them safe to show and to
# place in a Temporal visibility query.
PIPELINE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StartRun(BaseModel):
    """``POST /v1/runs``."""

    model_config = ConfigDict(extra="forbid")

    # Not pattern-checked here: a malformed name is an unknown pipeline (400
    # unknown_pipeline), not a schema error.
    pipeline: str = Field(description="A registered pipeline name.")
    input: dict[str, Any] = Field(
        default_factory=dict, description="The pipeline's input; checked against its schema."
    )


class RunStarted(BaseModel):
    run_id: str
    status: str = Field(description="The run's state: RUNNING for a new run.")
    stream_url: str = Field(description="WebSocket URL of the run's live events.")
    temporal_ui_url: str
    stream_token: str | None = Field(
        default=None,
        description="A read token for this run only (its stream, status and events), "
        "expiring after TIDINGS_GATEWAY_STREAM_TOKEN_TTL_SECONDS: hand it to a browser "
        "instead of the API key.",
    )


class RunSummary(BaseModel):
    run_id: str
    pipeline: str | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None


class RunList(BaseModel):
    runs: list[RunSummary]
    next_page: str | None = Field(
        description="Pass as ?page= for the next page; null on the last page."
    )


class RunDetail(RunSummary):
    current_step: str | None = None
    completed_steps: list[str] = Field(default_factory=list)
    waiting_for: str | None = Field(default=None, description="The signal a waiting run expects.")
    attempts: dict[str, int] = Field(default_factory=dict)
    result: dict[str, Any] | None = Field(default=None, description="Output of a completed run.")
    error: str | None = Field(default=None, description="Why a failed run failed.")
    stream_url: str
    temporal_ui_url: str


class SignalBody(BaseModel):
    """Optional body of ``POST /v1/runs/{id}/signals/{name}``: a JSON object handed
    to the workflow's signal as sent (the fields below are the conventional ones)."""

    model_config = ConfigDict(extra="allow")

    step: str | None = Field(default=None, description="The waiting step this answers.")
    comment: str | None = Field(default=None, max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)


class SignalSent(BaseModel):
    run_id: str
    signal: str
    status: str


class CancelRequested(BaseModel):
    run_id: str
    status: str = Field(description="CANCELLING until the workflow acknowledges.")


class StoredEvent(BaseModel):
    cursor: str = Field(description="Opaque position of this event; pass as ?after= to resume.")
    event: dict[str, Any] = Field(description="The event envelope (schema 1), as emitted.")


class EventPage(BaseModel):
    run_id: str
    events: list[StoredEvent]
    next_cursor: str | None = Field(
        description="Pass as ?after= for the following events; null if nothing was read."
    )
    more: bool = Field(
        description="True if the read stopped at a bound before the end of the log; "
        "false when every event stored so far was returned."
    )


class History(BaseModel):
    run_id: str
    events: list[dict[str, Any]] = Field(description="Temporal history events (proto JSON).")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
