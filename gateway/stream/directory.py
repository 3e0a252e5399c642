"""Which runs exist, and whose they are: the stream asks before it opens a socket.

:class:`RunDirectory` is the seam; :class:`TemporalRunDirectory` answers from
Temporal, the source of truth for runs. Unit tests may pass a stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tidings.runs import RunState, tenant_of_run

# Temporal's execution statuses as the run states clients see (tidings.runs.RunState).
RUN_STATES: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.RUNNING: RunState.RUNNING,
    WorkflowExecutionStatus.COMPLETED: RunState.COMPLETED,
    WorkflowExecutionStatus.FAILED: RunState.FAILED,
    WorkflowExecutionStatus.CANCELED: RunState.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: RunState.TERMINATED,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RunState.CONTINUED_AS_NEW,
    WorkflowExecutionStatus.TIMED_OUT: RunState.TIMED_OUT,
}


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    tenant: str
    state: str  # a RunState value
    # Lets a from=start replay seek by time instead of scanning the whole partition.
    started_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in RunState.FINISHED


class RunDirectory(Protocol):
    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        """The run if it exists and belongs to ``tenant``; otherwise None, so
        another tenant's run is indistinguishable from a missing one."""
        ...


class TemporalRunDirectory:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        if tenant_of_run(run_id) != tenant:
            return None
        try:
            description = await self._client.get_workflow_handle(run_id).describe()
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise
        state = RUN_STATES.get(description.status, RunState.RUNNING) if description.status else ""
        return RunInfo(run_id, tenant, state or RunState.RUNNING, description.start_time)
