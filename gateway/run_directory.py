"""The stream's :class:`gateway.stream.RunDirectory`, answered by the same
ownership check as the REST routes (run-id prefix *and* the TidingsTenant
search attribute), so a socket and a REST call can never disagree on whose
run it is.

The Temporal client is the lifespan's; it is looked up per call because the
stream service (and its router) must exist before the lifespan has run.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio.client import Client

from gateway import run_ops
from gateway.stream import RunInfo
from tidings.errors import NotFound


class OwnedRunDirectory:
    def __init__(self, temporal: Callable[[], Client]) -> None:
        self._temporal = temporal

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        try:
            run = await run_ops.owned_run(self._temporal(), tenant, run_id)
        except NotFound:
            return None
        return RunInfo(run_id, tenant, run.state, run.desc.start_time)
