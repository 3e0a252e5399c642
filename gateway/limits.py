"""Per-tenant admission for new runs: 429 + ``Retry-After`` over the limit.

The limit is ``TIDINGS_TENANTS_MAX_CONCURRENT_RUNS`` open runs per tenant,
counted by Temporal visibility (eventually consistent, so a burst can
overshoot by the runs started in the last moment; the limit protects
capacity, it is not an exact quota). A request carrying an Idempotency-Key
whose run already exists is never refused: retrying a start must keep
answering with the same run.
"""

from __future__ import annotations

from temporalio.client import Client

from gateway import run_ops
from tidings.errors import NotFound, RateLimited
from tidings.runs import PIPELINE_WORKFLOW, TENANT_ATTRIBUTE, run_id_for
from tidings.settings import Settings

RETRY_AFTER_SECONDS = 5


async def admit(
    client: Client, settings: Settings, tenant: str, idempotency_key: str | None
) -> None:
    """Return if ``tenant`` may start a run now; raise :class:`RateLimited` if not."""
    limit = settings.tenants.max_concurrent_runs
    query = (
        f"{TENANT_ATTRIBUTE} = '{tenant}' AND WorkflowType = '{PIPELINE_WORKFLOW}' "
        "AND ExecutionStatus = 'Running'"
    )
    running = (await client.count_workflows(query)).count
    if running < limit:
        return
    if idempotency_key is not None:
        try:
            await run_ops.owned_run(client, tenant, run_id_for(tenant, idempotency_key))
            return  # the start will answer with this existing run
        except NotFound:
            pass
    raise RateLimited(
        f"tenant has {running} runs in progress (limit {limit}); retry later",
        retry_after=RETRY_AFTER_SECONDS,
    )
