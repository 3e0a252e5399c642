"""Per-tenant admission for new runs: 429 + ``Retry-After`` over a limit.

Two limits, checked in this order:

- lag: the tenant's events are more than ``TIDINGS_TENANTS_MAX_EVENTS_LAG``
  records behind on its slowest gateway (``tidings.lag``). More runs would
  only make every watcher of that tenant wait longer, so new ones wait
  instead; the tenant's other calls, and other tenants, are untouched.
- concurrency: ``TIDINGS_TENANTS_MAX_CONCURRENT_RUNS`` open runs, counted by
  Temporal visibility (eventually consistent, so a burst can overshoot by the
  runs started in the last moment; the limit protects capacity, it is not an
  exact quota). A count serves a tenant's starts for :data:`COUNT_MAX_AGE_SECONDS`,
  plus the runs this gateway started since (:class:`RunningCounts`); an
  older one, up to :data:`COUNT_STALE_SECONDS`, still admits at once while
  a new count is asked in the background; a refusal is always decided on a
  count asked after the request arrived.

A request carrying an Idempotency-Key whose run already exists is never
refused: retrying a start must keep answering with the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

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
# How long one visibility count of a tenant's open runs serves its starts.
# Each count is a Temporal round trip and a scan of the tenant's open runs
# (as long as a start itself, on the dev server): asked per start, it halved
# the rate of POST /v1/runs (O3). Visibility lags a start by tens of
# milliseconds already, so the count was never exact.
COUNT_MAX_AGE_SECONDS = 0.1
# How old a count may be and still admit a start at once, while the next
# one is asked in the background. Waiting for it cost every tenth start
# about 50 ms under load (O3: 17 ms a start on average, where the start
# itself took 290): the overshoot it allows is the starts other gateways
# made within this window, on top of visibility's own lag.
COUNT_STALE_SECONDS = 1.0


@dataclass(slots=True)
class _Count:
    asked_at: float
    running: int
    started_since: int = 0


class RunningCounts:
    """Each tenant's open runs for the concurrency limit: Temporal's count,
    asked at most every ``max_age`` seconds per tenant (starts arriving
    together share one question), plus the runs this gateway started since."""

    def __init__(
        self,
        *,
        max_age: float = COUNT_MAX_AGE_SECONDS,
        stale: float = COUNT_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._stale = stale
        self.clock = clock
        self._counts: dict[str, _Count] = {}
        self._asking: dict[str, tuple[float, asyncio.Future[int]]] = {}

    async def running(self, client: Client, tenant: str, *, since: float | None = None) -> int:
        """The tenant's open runs, from a count asked at or after ``since``
        (default: within ``max_age``, or within ``stale`` while a newer one is
        asked), plus this gateway's starts since."""
        now = self.clock()
        oldest = now - self._max_age if since is None else since
        known = self._counts.get(tenant)
        if known is not None and known.asked_at >= oldest:
            return known.running + known.started_since
        asking = self._asking.get(tenant)
        if asking is None or asking[0] < oldest:
            future = asyncio.ensure_future(self._ask(client, tenant, now))
            asking = self._asking[tenant] = (now, future)
            future.add_done_callback(lambda done: self._forget(tenant, done))
        if since is None and known is not None and known.asked_at >= now - self._stale:
            return known.running + known.started_since
        # Shielded: one request that gives up must not cancel the others' count.
        await asyncio.shield(asking[1])
        known = self._counts[tenant]
        return known.running + known.started_since

    def started(self, tenant: str) -> None:
        """This gateway started a run of ``tenant``."""
        known = self._counts.get(tenant)
        if known is not None:
            known.started_since += 1

    async def _ask(self, client: Client, tenant: str, asked_at: float) -> int:
        running = await count_running(client, tenant)
        known = self._counts.get(tenant)
        if known is None or known.asked_at <= asked_at:
            self._counts[tenant] = _Count(asked_at, running)
        return running

    def _forget(self, tenant: str, done: asyncio.Future[int]) -> None:
        if not done.cancelled():
            # Retrieved: a count nobody waited for must not log "never retrieved".
            done.exception()
        asking = self._asking.get(tenant)
        if asking is not None and asking[1] is done:
            del self._asking[tenant]


async def count_running(client: Client, tenant: str) -> int:
    """Temporal visibility's count of ``tenant``'s open pipeline runs."""
    query = (
        f"{TENANT_ATTRIBUTE} = '{tenant}' AND WorkflowType = '{PIPELINE_WORKFLOW}' "
        "AND ExecutionStatus = 'Running'"
    )
    return (await client.count_workflows(query)).count


async def admit(
    client: Client,
    settings: Settings,
    tenant: str,
    idempotency_key: str | None,
    *,
    lag: LagReader | None = None,
    metrics: Metrics | None = None,
    counts: RunningCounts | None = None,
) -> None:
    """Return if ``tenant`` may start a run now; raise :class:`RateLimited` if not.

    ``counts``: where recent counts of open runs are kept (None: Temporal is
    asked on every call)."""
    arrived = counts.clock() if counts is not None else 0.0
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
        if counts is None:
            running = await count_running(client, tenant)
        else:
            running = await counts.running(client, tenant)
            if running >= limit:
                # Refused only on a count asked after this request arrived.
                running = await counts.running(client, tenant, since=arrived)
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
