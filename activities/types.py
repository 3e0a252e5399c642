"""Inputs and names shared by the workflow and the activities it schedules.

Plain dataclasses (not pydantic) so Temporal's default converter handles them
and a field added with a default never breaks a run already in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# Activities the workflow itself schedules (user steps are named by their spec).
EMIT_RUN_EVENT: Final = "tidings.emit_run_event"
RECORD_STEP_FAILURE: Final = "tidings.record_step_failure"
REQUEST_EXTERNAL: Final = "tidings.request_external"
# The activity a step of kind `agent` runs unless its spec names another.
AGENT_RUN: Final = "agent.run"
# Carries an agent run on after a review of its pending tool calls.
AGENT_RESUME: Final = "agent.resume"

# Events that close an attempt use this seq so they sort after anything the
# attempt itself emitted, whose count the closer cannot know (the attempt
# may have died mid-stream).
CLOSING_SEQ: Final = 1_000_000_000

# A run's terminal event (run.completed, .failed, .cancelled, .terminated,
# .timed_out) uses this seq whoever writes it, the workflow or the run-close
# watcher (workers/run_close.py), so both write the same event id: the
# watcher cannot know how many run events came before.
TERMINAL_SEQ: Final = 2_000_000_000

# Run-level events have no activity attempt of their own: an emit retried by
# Temporal is the same logical event, so they all carry attempt 1.
RUN_ATTEMPT: Final = 1


@dataclass
class HotLoopPolicy:
    """Alert when a step is retried more than ``max_retries`` times within ``window_seconds``."""

    max_retries: int = 3
    window_seconds: float = 60.0


@dataclass
class StepInput:
    """What every step activity receives: its mapped input plus the run's identity."""

    tenant: str
    run_id: str
    pipeline: str
    step: str
    input: dict[str, Any] = field(default_factory=dict)
    hot_loop: HotLoopPolicy = field(default_factory=HotLoopPolicy)
    # Set for one branch of a fan-out, so each branch has its own event stream.
    branch: int | None = None
    # Attempts of this step before this schedule of it (ended by an event-plane
    # outage, uncounted): the activity's attempt numbers carry on after them.
    attempt_base: int = 0


@dataclass
class RunEventInput:
    tenant: str
    run_id: str
    type: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    step: str | None = None
    attempt: int = RUN_ATTEMPT


@dataclass
class StepFailureInput:
    """A step that exhausted its retries: one ``step.failed`` event and one DLQ record."""

    tenant: str
    run_id: str
    pipeline: str
    step: str
    attempt: int
    input: dict[str, Any]
    error: str
    error_type: str | None = None


@dataclass
class ExternalRequestInput:
    """Work handed to a service outside the worker; it answers on the completions topic."""

    tenant: str
    run_id: str
    pipeline: str
    step: str
    attempt: int
    idempotency_key: str
    input: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 0.0


# The child workflow that runs one `agent` step through Pydantic AI's Temporal
# support (workflows/agent.py): model requests and tool calls are activities.
AGENT_WORKFLOW: Final = "tidings.agent"
# Sent by an agent step's model request to the run's workflow when it starts a
# retry, so the run's status counts the step's attempts as they happen.
STEP_ATTEMPT_SIGNAL: Final = "tidings.step_attempt"


@dataclass
class AgentStepInput:
    """One `agent` step for the agent workflow: ``activity`` is ``agent.run`` or
    ``agent.resume``, ``input`` the step's resolved input."""

    tenant: str
    run_id: str
    pipeline: str
    step: str
    activity: str
    input: dict[str, Any] = field(default_factory=dict)
    hot_loop: HotLoopPolicy = field(default_factory=HotLoopPolicy)
