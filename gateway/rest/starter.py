"""The seam between the REST API and the orchestration plane's run starter.

The orchestration plane owns pipelines: it validates a pipeline name and its
input against the registry and starts ``PipelineWorkflow`` with the id from
:func:`tidings.runs.run_id_for` (id-conflict policy USE_EXISTING). The gateway
only calls it, through this one protocol, so tests can inject a starter and
the gateway never imports workflow code.

A starter raises :class:`tidings.errors.TidingsError` (e.g. code
``unknown_pipeline`` or ``validation_error``) *before* starting anything when
the request is bad; the gateway maps that to the response at the edge.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable
from typing import Any, Protocol, cast

from temporalio.client import Client

from tidings.errors import Unavailable
from tidings.settings import Settings

# Where the orchestration plane exposes ``start_run``. Imported by name, at
# run time, so the gateway package itself never depends on workflow code.
STARTER_MODULE = "workflows.start"


class RunStarter(Protocol):
    def __call__(
        self,
        client: Client,
        settings: Settings,
        tenant: str,
        pipeline: str,
        input: dict[str, Any],
        idempotency_key: str | None,
    ) -> Awaitable[tuple[str, bool]]:
        """Start (or find) a run; returns ``(run_id, created)``."""
        ...


async def _no_starter(*_: object, **__: object) -> tuple[str, bool]:
    # Refuses whatever it is asked, so it takes any arguments a starter takes.
    raise Unavailable("this gateway has no pipeline registry installed")


def default_starter() -> RunStarter:
    """The orchestration plane's ``start_run``, or a starter that answers 503."""
    try:
        module = importlib.import_module(STARTER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != STARTER_MODULE:  # the module exists but one of its imports is missing
            raise
        return _no_starter
    found = getattr(module, "start_run", None)
    return _no_starter if found is None else cast(RunStarter, found)
