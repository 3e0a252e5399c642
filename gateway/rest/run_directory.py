"""The stream's :class:`gateway.stream.RunDirectory`, answered by the same
ownership rule as the REST routes (run-id prefix *and* the TidingsTenant
search attribute), so a socket and a REST call can never disagree on whose
run it is.

Sockets that open in one loop turn are answered together by one visibility
query (``WorkflowId IN (...)``, at most 100 ids: ``gateway.stream.batching``),
which costs the gateway about 29 us of CPU per run where a describe costs
about 350 us (measured on the 2-core test machine): a reconnect storm is
mostly run lookups. Visibility lags a start by tens of milliseconds, so a run
it does not list is described, which is authoritative. Its states lag as
well, so a RUNNING answer comes back marked ``cached`` and the socket settles
it later (``gateway.stream.directory``).

The Temporal client is the lifespan's; it is looked up per call because the
stream service (and its router) must exist before the lifespan has run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus

from gateway.rest import run_ops
from gateway.stream import RunInfo
from gateway.stream.batching import Batcher
from tidings.errors import NotFound
from tidings.runs import RUN_STATES, TENANT_ATTRIBUTE, RunState, tenant_of_run

_MAX_IDS_PER_QUERY = 100
# A run that continued as new lists once per execution; a few is plenty.
_MAX_EXECUTIONS = _MAX_IDS_PER_QUERY * 4


@dataclass(frozen=True, slots=True)
class _Listed:
    """What a socket needs of a listed execution, read straight off the
    protobuf: the SDK's WorkflowExecution decodes every search attribute and
    memo field, several times the cost of the rest of the lookup."""

    status: WorkflowExecutionStatus | None
    started_at: datetime
    tenant: str | None

    @classmethod
    def of(cls, info: WorkflowExecutionInfo) -> _Listed:
        owner = info.search_attributes.indexed_fields.get(TENANT_ATTRIBUTE)
        tenant: str | None = None
        if owner is not None:
            try:
                decoded = json.loads(owner.data)
            except ValueError:
                decoded = None
            tenant = decoded if isinstance(decoded, str) else None
        return cls(
            WorkflowExecutionStatus(info.status) if info.status else None,
            info.start_time.ToDatetime().replace(tzinfo=UTC),
            tenant,
        )


class OwnedRunDirectory:
    def __init__(self, temporal: Callable[[], Client]) -> None:
        self._temporal = temporal
        self._listing: Batcher[str, _Listed | None] = Batcher(
            self._list, max_batch=_MAX_IDS_PER_QUERY
        )

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        if not run_ops.is_run_id(run_id) or tenant_of_run(run_id) != tenant:
            return None
        listed = await self._listing.ask(run_id)
        if listed is None:
            return await self._describe(tenant, run_id)
        if listed.tenant != tenant:
            return None
        state = (
            RUN_STATES.get(listed.status.name, RunState.RUNNING)
            if listed.status
            else RunState.RUNNING
        )
        return RunInfo(
            run_id, tenant, state, listed.started_at, cached=state not in RunState.FINISHED
        )

    async def _describe(self, tenant: str, run_id: str) -> RunInfo | None:
        try:
            run = await run_ops.owned_run(self._temporal(), tenant, run_id)
        except NotFound:
            return None
        return RunInfo(run_id, tenant, run.state, run.desc.start_time)

    async def _list(self, run_ids: list[str]) -> dict[str, _Listed | None]:
        client = self._temporal()
        # Ids are checked by is_run_id ([a-z0-9-] only): nothing to escape.
        query = "WorkflowId IN (" + ",".join(f"'{run_id}'" for run_id in run_ids) + ")"
        latest: dict[str, WorkflowExecutionInfo] = {}
        token, seen = b"", 0
        while seen < _MAX_EXECUTIONS:
            page = await client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=client.namespace,
                    page_size=len(run_ids) * 2,
                    query=query,
                    next_page_token=token,
                )
            )
            for info in page.executions:
                known = latest.get(info.execution.workflow_id)
                if (
                    known is None
                    or info.start_time.ToNanoseconds() > known.start_time.ToNanoseconds()
                ):
                    latest[info.execution.workflow_id] = info
            seen += len(page.executions)
            token = page.next_page_token
            if not token:
                break
        found: dict[str, _Listed | None] = dict.fromkeys(run_ids)
        for run_id, info in latest.items():
            listed = _Listed.of(info)
            # The latest execution seen handed over to another: describe it.
            if listed.status is not WorkflowExecutionStatus.CONTINUED_AS_NEW:
                found[run_id] = listed
        return found
