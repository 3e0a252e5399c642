"""The ``/v1/runs`` REST routes (docs/protocol.md, "REST").

Routes stay thin: authenticate (the ``Tenant`` dependency), check ownership
(``run_ops.owned_run``: another tenant's run is a 404), call one operation,
shape the response. Every refusal happens before anything is started or
changed, and every error is rendered by ``gateway.rest.errors``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response

from gateway.cursor import Cursor, CursorError
from gateway.rest import run_ops
from gateway.rest.auth import Tenant
from gateway.rest.deps import KafkaDep, ServicesDep, SettingsDep, StarterDep, TemporalDep
from gateway.rest.errors import error_responses
from gateway.rest.event_log import read_page
from gateway.rest.limits import admit
from gateway.rest.links import stream_url, temporal_ui_url
from gateway.rest.schemas import (
    PIPELINE_PATTERN,
    CancelRequested,
    EventPage,
    History,
    RunDetail,
    RunList,
    RunStarted,
    SignalBody,
    SignalSent,
    StartRun,
    StoredEvent,
)
from tidings.errors import BadRequest, Conflict, ErrorCode
from tidings.observability import bind_log_context, start_span
from tidings.runs import SIGNALS, RunState

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=error_responses(401, 422, 503))

_PIPELINE = re.compile(PIPELINE_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
# Filterable states: Temporal's. WAITING is the workflow's own refinement of
# RUNNING, which visibility does not know.
RunStateName = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT"]


@router.post(
    "",
    status_code=201,
    response_model=RunStarted,
    responses={
        200: {"model": RunStarted, "description": "The run this key already started."},
        **error_responses(400, 409, 413, 429),
    },
    summary="Start a run (idempotent with Idempotency-Key)",
)
async def start_run(
    body: StartRun,
    tenant: Tenant,
    request: Request,
    response: Response,
    settings: SettingsDep,
    temporal: TemporalDep,
    starter: StarterDep,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Same key, same tenant: the same run, never a second one.",
        ),
    ] = None,
) -> RunStarted:
    if not _PIPELINE.match(body.pipeline):
        name = body.pipeline[:64]
        raise BadRequest(f"unknown pipeline {name!r}", code=ErrorCode.UNKNOWN_PIPELINE)
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
    # The span every later one (the workflow, its activities, the Kafka
    # records and the socket sends) descends from, through Temporal's and
    # Kafka's headers.
    with start_span("POST /v1/runs", tenant=tenant, pipeline=body.pipeline) as span:
        await admit(
            temporal,
            settings,
            tenant,
            idempotency_key,
            lag=services.lag,
            metrics=request.app.state.metrics,
            counts=services.run_counts,
        )
        # No later than Temporal's start time: a from=start replay seeks from it.
        started_at = datetime.now(UTC)
        run_id, created = await starter(
            temporal, settings, tenant, body.pipeline, body.input, idempotency_key
        )
        if created and services.run_counts is not None:
            services.run_counts.started(tenant)
        span.set_attribute("tidings.run_id", run_id)
        bind_log_context(run_id=run_id, tenant=tenant)
    status = RunState.RUNNING
    if not created:
        existing = await run_ops.owned_run(temporal, tenant, run_id)
        if existing.pipeline not in (None, body.pipeline):
            # The key names a run of another pipeline: answering with it would
            # tell the client its (different) request succeeded.
            raise Conflict(
                f"Idempotency-Key already used for a run of pipeline {existing.pipeline!r}"
            )
        response.status_code = 200
        status = existing.state
        started_at = existing.desc.start_time
    if services.run_index is not None:
        # Before the answer: the client's socket may open on another gateway next.
        await services.run_index.record(run_id, tenant, started_at)
    return RunStarted(
        run_id=run_id,
        status=status,
        stream_url=stream_url(settings, request, run_id),
        temporal_ui_url=temporal_ui_url(settings, run_id),
        stream_token=request.app.state.access.tokens.mint(tenant, [run_id])[0],
    )


@router.get("", response_model=RunList, responses=error_responses(400), summary="List runs")
async def list_runs(
    tenant: Tenant,
    temporal: TemporalDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page: Annotated[str | None, Query(max_length=4096, description="A previous next_page.")] = None,
    pipeline: Annotated[str | None, Query(pattern=PIPELINE_PATTERN)] = None,
    status: RunStateName | None = None,
) -> RunList:
    query = run_ops.list_query(tenant, pipeline=pipeline, status=status)
    key = settings.gateway.token_secret.get_secret_value().encode()
    runs, next_page = await run_ops.list_runs(
        temporal, tenant, limit=limit, page=page, query=query, key=key
    )
    return RunList(runs=runs, next_page=next_page)


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    responses=error_responses(404),
    summary="A run's status, current step and result",
)
async def get_run(
    run_id: str, tenant: Tenant, request: Request, settings: SettingsDep, temporal: TemporalDep
) -> RunDetail:
    run = await run_ops.owned_run(temporal, tenant, run_id)
    summary = run_ops.summary_of(run.desc)
    live: dict[str, Any] = {}
    if not run.finished:
        live = await run_ops.live_status(run)
    result, error = await run_ops.outcome(run)
    return RunDetail(
        **summary.model_dump(exclude={"status"}),
        status=_live_state(summary.status, live),
        current_step=live.get("current_step"),
        completed_steps=list(live.get("completed_steps") or []),
        waiting_for=live.get("waiting_for"),
        attempts=dict(live.get("attempts") or {}),
        result=result,
        error=error,
        stream_url=stream_url(settings, request, run_id),
        temporal_ui_url=temporal_ui_url(settings, run_id),
    )


def _live_state(closed_state: str, live: dict[str, Any]) -> str:
    """Temporal's state is authoritative once a run closes; while it runs, the
    workflow's own finer state (WAITING) is shown. A workflow that reports
    itself done before Temporal has closed it is still RUNNING to clients,
    so a finished status always comes with its result."""
    state = live.get("state")
    if closed_state == RunState.RUNNING and state == RunState.WAITING:
        return RunState.WAITING
    return closed_state


@router.post(
    "/{run_id}/signals/{name}",
    status_code=202,
    response_model=SignalSent,
    responses=error_responses(400, 404, 409),
    summary="Send a signal (approve, reject) to a run",
)
async def send_signal(
    run_id: str,
    name: str,
    tenant: Tenant,
    temporal: TemporalDep,
    body: Annotated[SignalBody | None, Body()] = None,
) -> SignalSent:
    if name not in SIGNALS:
        known = ", ".join(sorted(SIGNALS))
        raise BadRequest(
            f"unknown signal {name[:64]!r} (known: {known})", code=ErrorCode.UNKNOWN_SIGNAL
        )
    run = await run_ops.owned_run(temporal, tenant, run_id)
    payload = None if body is None else body.model_dump(exclude_unset=True)
    await run_ops.signal(run, name, payload)
    return SignalSent(run_id=run_id, signal=name, status=run.state)


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=CancelRequested,
    responses=error_responses(404, 409),
    summary="Request cancellation of a run",
)
async def cancel_run(run_id: str, tenant: Tenant, temporal: TemporalDep) -> CancelRequested:
    run = await run_ops.owned_run(temporal, tenant, run_id)
    await run_ops.cancel(run)
    return CancelRequested(run_id=run_id, status="CANCELLING")


@router.get(
    "/{run_id}/history",
    response_model=History,
    responses=error_responses(404),
    summary="The run's Temporal history",
)
async def get_history(run_id: str, tenant: Tenant, temporal: TemporalDep) -> History:
    run = await run_ops.owned_run(temporal, tenant, run_id)
    return History(run_id=run_id, events=await run_ops.history(run))


@router.get(
    "/{run_id}/events",
    response_model=EventPage,
    responses=error_responses(400, 404),
    summary="The run's stored events, replayed from Kafka",
    description=(
        "Pages through the events stored for the run. `after` is a cursor from a previous "
        "page (`next_cursor`) or event (`cursor`); cursors are opaque (today "
        "`<partition>:<offset>` of the run's Kafka partition). `more` is true when the page "
        "stopped at a bound (limit, records scanned or time) before the end of the log."
    ),
)
async def get_events(
    run_id: str,
    tenant: Tenant,
    settings: SettingsDep,
    temporal: TemporalDep,
    kafka: KafkaDep,
    after: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    cursor = None if after is None else _cursor(after)
    await run_ops.owned_run(temporal, tenant, run_id)
    page = await read_page(
        kafka,
        topic_prefix=settings.kafka.topic_prefix,
        tenant=tenant,
        run_id=run_id,
        after=cursor,
        limit=limit,
    )
    return EventPage(
        run_id=run_id,
        events=[StoredEvent(cursor=str(c), event=event) for c, event in page.events],
        next_cursor=None if page.next_cursor is None else str(page.next_cursor),
        more=page.more,
    )


def _cursor(raw: str) -> Cursor:
    try:
        return Cursor.decode(raw)
    except CursorError:
        raise BadRequest("invalid cursor (use a cursor this API returned)") from None
