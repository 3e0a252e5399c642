"""The seam between the REST API and the orchestration plane's run starter.

The orchestration plane owns pipelines: it validates a pipeline name and its
input against the registry and starts ``PipelineWorkflow`` with the id from
:func:`tidings.runs.run_id_for` (id-conflict policy USE_EXISTING). The gateway
only calls it, through this one protocol: the process's entry point passes
the starter in (``create_app``), so tests can inject one and the gateway
never imports workflow code.

A starter raises :class:`tidings.errors.TidingsError` (e.g. code
``unknown_pipeline`` or ``validation_error``) *before* starting anything when
the request is bad; the gateway maps that to the response at the edge.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from temporalio.client import Client

from tidings.errors import Unavailable
from tidings.settings import Settings


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


async def no_starter(*_: object, **__: object) -> tuple[str, bool]:
    """The starter of a gateway given none: every start is a 503."""
    # Refuses whatever it is asked, so it takes any arguments a starter takes.
    raise Unavailable("this gateway has no pipeline registry installed")
