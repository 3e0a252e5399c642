"""Per-tenant admission for new runs: 429 + ``Retry-After`` over a limit.

Two limits, checked in this order:

- lag: the tenant's events are more than ``TIDINGS_TENANTS_MAX_EVENTS_LAG``
  records behind on its slowest gateway (``tidings.lag``). More runs would
  only make every watcher of that tenant wait longer, so new ones wait
  instead; the tenant's other calls, and other tenants, are untouched.
- concurrency: ``TIDINGS_TENANTS_MAX_CONCURRENT_RUNS`` open runs, counted by
  Temporal visibility (eventually consistent, so a burst can overshoot by the
  runs started in the last moment; the limit protects capacity, it is not an
  exact quota).

A request carrying an Idempotency-Key whose run already exists is never
refused: retrying a start must keep answering with the same run.
"""

from __future__ import annotations

from temporalio.client import Client

from gateway.rest import run_ops
from gateway.rest.metrics import Metrics
from tidings.errors import NotFound, RateLimited
from tidings.lag import REFRESH_SECONDS, LagReader
from tidings.runs import PIPELINE_WORKFLOW, TENANT_ATTRIBUTE, run_id_for
from tidings.settings import Settings

RETRY_AFTER_SECONDS = 5
# Lag is re-read every REFRESH_SECONDS; asking again sooner cannot succeed,
# and a short wait lets clients come back as soon as the gateways catch up.
LAG_RETRY_AFTER_SECONDS = max(1, round(REFRESH_SECONDS * 2))


async def admit(
    client: Client,
    settings: Settings,
    tenant: str,
    idempotency_key: str | None,
    *,
    lag: LagReader | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Return if ``tenant`` may start a run now; raise :class:`RateLimited` if not."""
    refusal: RateLimited | None = None
    reason = ""
    if lag is not None:
        behind = await lag.lag(tenant)
        if metrics is not None:
            metrics.tenant_lag.labels(tenant).set(behind)
        limit = settings.tenants.max_events_lag
        if behind > limit:
            reason = "lag"
            refusal = RateLimited(
                f"tenant's events are {behind} records behind (limit {limit}); retry later",
                retry_after=LAG_RETRY_AFTER_SECONDS,
            )
    if refusal is None:
        limit = settings.tenants.max_concurrent_runs
        query = (
            f"{TENANT_ATTRIBUTE} = '{tenant}' AND WorkflowType = '{PIPELINE_WORKFLOW}' "
            "AND ExecutionStatus = 'Running'"
        )
        running = (await client.count_workflows(query)).count
        if running < limit:
            return
        reason = "concurrency"
        refusal = RateLimited(
            f"tenant has {running} runs in progress (limit {limit}); retry later",
            retry_after=RETRY_AFTER_SECONDS,
        )
    if idempotency_key is not None:
        try:
            await run_ops.owned_run(client, tenant, run_id_for(tenant, idempotency_key))
            return  # the start will answer with this existing run
        except NotFound:
            pass
    if metrics is not None:
        metrics.shed.labels(tenant, reason).inc()
    raise refusal
