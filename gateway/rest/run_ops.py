"""What the REST API asks Temporal about a run, always scoped to one tenant.

Ownership is checked twice: the run id must start with the caller's tenant
(:func:`tidings.runs.tenant_of_run`, no round trip) *and* the workflow's
``TidingsTenant`` search attribute must name it. Anything else — no such
workflow, another tenant's, a workflow without the attribute — is the same
404, so the answer never tells a caller that someone else's run exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from gateway.rest.schemas import RunSummary
from tidings.errors import BadRequest, Conflict, ErrorCode, NotFound
from tidings.runs import (
    PIPELINE_ATTRIBUTE,
    PIPELINE_WORKFLOW,
    RUN_STATES,
    STATUS_QUERY,
    TENANT_ATTRIBUTE,
    RunState,
    tenant_of_run,
)

log = logging.getLogger(__name__)

TENANT_KEY = SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE)
PIPELINE_KEY = SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE)
# Run ids are "<tenant>-<hex>" (tidings.runs.run_id_for); anything else is
# refused before it reaches Temporal.
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}-[a-z0-9]{1,64}$")
# A query is answered by a worker replaying the run; don't hang a request on it.
QUERY_TIMEOUT = timedelta(seconds=5)


class OwnedRun:
    """A run the caller's tenant owns: its handle and its latest description."""

    def __init__(self, handle: WorkflowHandle[Any, Any], desc: WorkflowExecutionDescription):
        self.handle = handle
        self.desc = desc

    @property
    def run_id(self) -> str:
        return self.desc.id

    @property
    def state(self) -> str:
        return state_of(self.desc)

    @property
    def pipeline(self) -> str | None:
        return self.desc.typed_search_attributes.get(PIPELINE_KEY)

    @property
    def finished(self) -> bool:
        return self.state in RunState.FINISHED


def state_of(execution: WorkflowExecution) -> str:
    if execution.status is None:
        return RunState.RUNNING
    return RUN_STATES.get(execution.status.name, execution.status.name)


def summary_of(execution: WorkflowExecution) -> RunSummary:
    return RunSummary(
        run_id=execution.id,
        pipeline=execution.typed_search_attributes.get(PIPELINE_KEY),
        status=state_of(execution),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


def is_run_id(text: str) -> bool:
    """Shaped like a run id: safe to quote in a visibility query."""
    return _RUN_ID.match(text) is not None


def _not_found() -> NotFound:
    return NotFound("run not found")


async def owned_run(client: Client, tenant: str, run_id: str) -> OwnedRun:
    """The run, if ``tenant`` owns it; :class:`NotFound` otherwise."""
    if not _RUN_ID.match(run_id) or tenant_of_run(run_id) != tenant:
        raise _not_found()
    handle = client.get_workflow_handle(run_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise _not_found() from None
        raise
    if desc.typed_search_attributes.get(TENANT_KEY) != tenant:
        raise _not_found()
    return OwnedRun(handle, desc)


async def live_status(run: OwnedRun) -> dict[str, Any]:
    """The workflow's ``status`` query, or ``{}`` if no worker answers in time."""
    try:
        raw = await run.handle.query(STATUS_QUERY, result_type=dict, rpc_timeout=QUERY_TIMEOUT)
    except Exception as exc:  # a busy or absent worker must not fail a status read
        log.info("status query of %s failed: %s", run.run_id, type(exc).__name__)
        return {}
    return raw if isinstance(raw, dict) else {}


async def outcome(run: OwnedRun) -> tuple[dict[str, Any] | None, str | None]:
    """``(result, error)`` of a finished run (PipelineResult's output / error)."""
    state = run.state
    if state == RunState.COMPLETED:
        value = await run.handle.result(rpc_timeout=QUERY_TIMEOUT)
        if isinstance(value, dict):
            output = value.get("output", value)
            error = value.get("error")
            return (output if isinstance(output, dict) else {"value": output}), (
                str(error) if error else None
            )
        return {"value": value}, None
    if state == RunState.FAILED:
        try:
            await run.handle.result(rpc_timeout=QUERY_TIMEOUT)
        except WorkflowFailureError as exc:
            cause = exc.cause
            return None, str(getattr(cause, "message", "") or cause)
    if state in RunState.FINISHED:
        return None, state.lower().replace("_", " ")
    return None, None


def list_query(tenant: str, *, pipeline: str | None, status: str | None) -> str:
    # The tenant comes from the API key (a validated [a-z0-9-] name) and the
    # filters are pattern-checked by the route, so nothing here is injectable.
    clauses = [f"{TENANT_ATTRIBUTE} = '{tenant}'", f"WorkflowType = '{PIPELINE_WORKFLOW}'"]
    if pipeline is not None:
        clauses.append(f"{PIPELINE_ATTRIBUTE} = '{pipeline}'")
    if status is not None:
        clauses.append(f"ExecutionStatus = '{_visibility_status(status)}'")
    # No ORDER BY: not every visibility store supports it (SQLite does not);
    # Temporal's default order lists open runs first, then the most recently closed.
    return " AND ".join(clauses)


def _visibility_status(state: str) -> str:
    for status, name in RUN_STATES.items():
        if name == state:
            return "".join(part.capitalize() for part in status.split("_"))
    raise BadRequest(f"unknown status filter {state!r}")


async def list_runs(
    client: Client, tenant: str, *, limit: int, page: str | None, query: str, key: bytes
) -> tuple[list[RunSummary], str | None]:
    token = _decode_page(page, key, tenant, query)
    listing = client.list_workflows(query, page_size=limit, next_page_token=token)
    try:
        await listing.fetch_next_page(page_size=limit)
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise BadRequest("invalid page cursor or filter") from None
        raise
    runs = [summary_of(execution) for execution in listing.current_page or []]
    # Belt and braces: the query already filters by tenant.
    runs = [run for run in runs if tenant_of_run(run.run_id) == tenant]
    return runs, _encode_page(listing.next_page_token, key, tenant, query)


# Page cursors are Temporal's page tokens, signed: Temporal answers a forged
# token with an opaque internal error, and an unsigned one could be replayed
# under another tenant's or another filter's query.
_PAGE_MAC_BYTES = 16


def _page_mac(key: bytes, tenant: str, query: str, token: bytes) -> bytes:
    material = b"\x1f".join((b"page", tenant.encode(), query.encode(), token))
    return hmac.new(key, material, hashlib.sha256).digest()[:_PAGE_MAC_BYTES]


def _encode_page(token: bytes | None, key: bytes, tenant: str, query: str) -> str | None:
    if not token:
        return None
    signed = _page_mac(key, tenant, query, token) + token
    return base64.urlsafe_b64encode(signed).decode().rstrip("=")


def _decode_page(page: str | None, key: bytes, tenant: str, query: str) -> bytes | None:
    if not page:
        return None
    try:
        signed = base64.b64decode(page + "=" * (-len(page) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        signed = b""
    # Only the spelling _encode_page writes: base64 ignores a final group's
    # spare bits, so other texts would decode to the same signed bytes.
    if base64.urlsafe_b64encode(signed).decode().rstrip("=") != page:
        signed = b""
    mac, token = signed[:_PAGE_MAC_BYTES], signed[_PAGE_MAC_BYTES:]
    if not token or not hmac.compare_digest(mac, _page_mac(key, tenant, query, token)):
        raise BadRequest(
            "invalid page cursor (use next_page from a previous page with the same filters)"
        )
    return token


def finished_conflict(run: OwnedRun) -> Conflict:
    return Conflict(f"run already finished ({run.state})", code=ErrorCode.RUN_FINISHED)


async def signal(run: OwnedRun, name: str, payload: dict[str, Any] | None) -> None:
    if run.finished:
        raise finished_conflict(run)
    try:
        if payload is None:
            await run.handle.signal(name)
        else:
            await run.handle.signal(name, payload)
    except RPCError as exc:
        # The run finished between describe and signal.
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise finished_conflict(run) from None
        raise


async def cancel(run: OwnedRun) -> None:
    if run.finished:
        raise finished_conflict(run)
    try:
        await run.handle.cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise finished_conflict(run) from None
        raise


async def history(run: OwnedRun) -> list[dict[str, Any]]:
    fetched = await run.handle.fetch_history()
    events: list[dict[str, Any]] = fetched.to_json_dict().get("events", [])
    return events
