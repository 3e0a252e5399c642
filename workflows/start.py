"""Starting a run: the one function the REST layer and the CLI call."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings.errors import BadRequest, Conflict, ErrorCode, TidingsError
from tidings.runs import (
    PIPELINE_ATTRIBUTE,
    PIPELINE_WORKFLOW,
    TENANT_ATTRIBUTE,
    PipelineInput,
    run_id_for,
)
from tidings.settings import Settings
from tidings.topics import is_valid_tenant
from workflows.registry import PipelineRegistry, default_registry
from workflows.spec import PipelineSpec

TENANT_KEY = SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE)
PIPELINE_KEY = SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE)

# Input fields never shown in the Temporal UI, whatever a pipeline declares.
_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|credential|cookie", re.IGNORECASE)
EXCERPT_CHARS = 80
# Memo key of a run's request fingerprint. The memo is part of the start
# request itself, so a run never exists without the fingerprint of the body
# that started it, and a repeated Idempotency-Key is compared against it.
REQUEST_MEMO = "tidings.request"


async def start_run(
    client: Client,
    settings: Settings,
    tenant: str,
    pipeline: str,
    input: dict[str, Any],
    idempotency_key: str | None,
    *,
    registry: PipelineRegistry | None = None,
) -> tuple[str, bool]:
    """Start a run of ``pipeline`` for ``tenant``; return ``(run_id, created)``.

    The same ``(tenant, idempotency_key)`` always names the same workflow id,
    and a start for an id that exists (running or finished) returns that run
    with ``created=False`` instead of starting a second one, however many
    identical requests race. Raises :class:`tidings.errors.BadRequest` (code
    ``unknown_pipeline`` or ``validation_error``) naming the bad field.
    """
    if not is_valid_tenant(tenant):
        raise BadRequest(f"invalid tenant name {tenant!r}")
    registry = registry or default_registry(settings.worker.pipelines_dir)
    spec = registry.get(pipeline)
    validated = registry.validate_input(pipeline, input)
    run_id = run_id_for(tenant, idempotency_key)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise BadRequest("Idempotency-Key must be 1 to 255 characters")
    arg = PipelineInput(
        tenant=tenant,
        pipeline=pipeline,
        input=validated,
        run_id=run_id,
        spec=spec.model_dump(mode="json"),
    )
    return await start_pipeline(
        client,
        arg,
        # The whole run goes there, workflow and activities (which default to
        # the workflow's queue): only workers that registered the pipeline's
        # steps poll it, and the workflow code stays as it was.
        registry.task_queue(pipeline, settings.temporal.task_queue),
        summary=run_summary(spec, tenant, validated),
        details=run_details(spec, tenant, validated),
    )


async def start_pipeline(
    client: Client,
    arg: PipelineInput,
    task_queue: str,
    *,
    summary: str | None = None,
    details: str | None = None,
    execution_timeout: timedelta | None = None,
) -> tuple[str, bool]:
    """Start ``PipelineWorkflow`` with id ``arg.run_id`` (input already
    validated), or find the run that has it; return ``(run_id, created)``.

    A run found under that id (the same Idempotency-Key) must have been
    started by the same request: another pipeline raises
    :class:`tidings.errors.Conflict`, another input a 422
    ``idempotency_key_reused``, rather than answering with a run that is not
    what the caller asked for.
    """
    fingerprint = request_fingerprint(arg.pipeline, arg.input)
    try:
        handle = await client.start_workflow(
            PIPELINE_WORKFLOW,
            arg,
            id=arg.run_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A finished run keeps its id: the same key never starts a second run.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            execution_timeout=execution_timeout,
            memo={REQUEST_MEMO: fingerprint},
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TENANT_KEY, arg.tenant),
                    SearchAttributePair(PIPELINE_KEY, arg.pipeline),
                ]
            ),
            static_summary=summary,
            static_details=details,
        )
    except WorkflowAlreadyStartedError:
        created = False
    else:
        # The SDK keeps the server's answer but exposes no accessor for its
        # `started` flag, which is the only way to tell a new run from an existing one.
        response = getattr(handle, "_start_workflow_response", None)
        created = bool(getattr(response, "started", True))
    if not created:
        await _check_same_request(client, arg, fingerprint)
    return arg.run_id, created


def request_fingerprint(pipeline: str, input: dict[str, Any]) -> str:
    """What identifies a start request: its pipeline and its (validated) input,
    independent of key order and whitespace."""
    canonical = json.dumps(
        {"pipeline": pipeline, "input": input},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


async def _check_same_request(client: Client, arg: PipelineInput, fingerprint: str) -> None:
    desc = await client.get_workflow_handle(arg.run_id).describe()
    pipeline = desc.typed_search_attributes.get(PIPELINE_KEY)
    if pipeline not in (None, arg.pipeline):
        raise Conflict(f"Idempotency-Key already used for a run of pipeline {pipeline!r}")
    stored = (await desc.memo()).get(REQUEST_MEMO)
    # Runs started before fingerprints were stored have none: the pipeline
    # check above is all that can be said of them.
    if stored is not None and stored != fingerprint:
        raise TidingsError(
            "Idempotency-Key already used with another request body; "
            "use a new key for a new run, or send the same body to get the first run",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            status=422,
        )


def input_excerpt(spec: PipelineSpec, input: dict[str, Any]) -> str | None:
    """The first declared string field of the input, shortened: what the run is
    about (a question, a ticket), never a field whose name suggests a secret."""
    for name, field in spec.input.items():
        value = input.get(name)
        if field.type != "string" or not isinstance(value, str) or _SECRET_NAME.search(name):
            continue
        text = " ".join(value.split())
        if text:
            cut = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
            return f"{name}: {cut}"
    return None


def run_summary(spec: PipelineSpec, tenant: str, input: dict[str, Any]) -> str:
    """One line for the Temporal UI's run list: pipeline, tenant, what it is about."""
    excerpt = input_excerpt(spec, input)
    return f"{spec.name} for {tenant}" + (f" · {excerpt}" if excerpt else "")


def run_details(spec: PipelineSpec, tenant: str, input: dict[str, Any]) -> str:
    """Markdown for the run's page in the Temporal UI: the steps it will run."""
    lines = [f"**pipeline** {spec.name} · **tenant** {tenant}"]
    excerpt = input_excerpt(spec, input)
    if excerpt:
        lines.append(excerpt)
    steps = " → ".join(
        "[" + ", ".join(step.name for step in stage) + "]" if len(stage) > 1 else stage[0].name
        for stage in spec.stages()
    )
    lines.append(f"**steps** {steps}")
    lines.append("Events: `tidings events <run_id>`; live: `tidings watch <run_id>`.")
    return "\n\n".join(lines)
