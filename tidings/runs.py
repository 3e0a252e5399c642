"""The run contract shared by the REST API, the workflow and the clients.

The workflow takes one input dataclass and returns one, so fields with
defaults can be added later without breaking runs already in flight.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

PIPELINE_WORKFLOW: Final = "PipelineWorkflow"

# Queries and signals of the pipeline workflow.
STATUS_QUERY: Final = "status"
APPROVE_SIGNAL: Final = "approve"
REJECT_SIGNAL: Final = "reject"
SIGNALS: Final = frozenset({APPROVE_SIGNAL, REJECT_SIGNAL})

# Search attributes, so runs are findable by tenant and pipeline in the Temporal UI.
TENANT_ATTRIBUTE: Final = "TidingsTenant"
PIPELINE_ATTRIBUTE: Final = "TidingsPipeline"


class RunState:
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"

    FINISHED = frozenset({COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT})


# Temporal's workflow execution statuses, by their names in its
# ``WorkflowExecutionStatus``, as the run states clients see. Keyed by name so
# this contract needs no Temporal client to be imported.
RUN_STATES: Final[Mapping[str, str]] = {
    "RUNNING": RunState.RUNNING,
    "COMPLETED": RunState.COMPLETED,
    "FAILED": RunState.FAILED,
    "CANCELED": RunState.CANCELLED,
    "TERMINATED": RunState.TERMINATED,
    "CONTINUED_AS_NEW": RunState.CONTINUED_AS_NEW,
    "TIMED_OUT": RunState.TIMED_OUT,
}

# The WebSocket route of a run's events (docs/protocol.md); ``{run_id}`` is
# one path segment.
STREAM_PATH: Final = "/v1/runs/{run_id}/stream"


def stream_path(quoted_run_id: str) -> str:
    """:data:`STREAM_PATH` for a run id already quoted for a URL path."""
    return STREAM_PATH.format(run_id=quoted_run_id)


@dataclass
class PipelineInput:
    tenant: str
    pipeline: str
    input: dict[str, Any] = field(default_factory=dict)
    # Carried across continue-as-new so the event stream keeps one run id and
    # monotonic sequence numbers.
    run_id: str = ""
    resume_from_step: int = 0
    carried: dict[str, Any] = field(default_factory=dict)
    # The pipeline spec, frozen into the run at start: a spec edited later
    # never changes (or breaks the replay of) a run already in flight.
    spec: dict[str, Any] = field(default_factory=dict)
    # Next seq of run-level events, carried across continue-as-new.
    seq: int = 0


@dataclass
class PipelineResult:
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunStatus:
    """What the ``status`` query returns."""

    state: str
    pipeline: str
    current_step: str | None = None
    completed_steps: list[str] = field(default_factory=list)
    waiting_for: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)


def run_id_for(tenant: str, idempotency_key: str | None) -> str:
    """The workflow id of a run.

    With an idempotency key the id is derived from (tenant, key), so the same
    key can only ever name one workflow: Temporal's id-conflict policy then
    turns a repeated or concurrent start into the existing run.
    """
    if idempotency_key is None:
        return f"{tenant}-{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{tenant}\x1f{idempotency_key}".encode()).hexdigest()[:32]
    return f"{tenant}-k{digest}"


def tenant_of_run(run_id: str) -> str | None:
    """Run ids start with their tenant, so a gateway can refuse another
    tenant's run before asking Temporal anything."""
    tenant, sep, _ = run_id.rpartition("-")
    return tenant if sep and tenant else None
