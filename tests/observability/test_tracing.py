"""One trace from the REST call through the workflow and its activity to the
Kafka record's ``traceparent`` header, and on to a consumer's span."""

from __future__ import annotations

import pytest

from tests.observability.conftest import Obs
from tests.support import wait_for
from tests.topics import run_records
from tidings.observability import span_from_headers

pytestmark = pytest.mark.integration

CHAIN = (
    "POST /v1/runs",
    "StartWorkflow:PipelineWorkflow",
    "RunWorkflow:PipelineWorkflow",
    "StartActivity:obs.speak",
    "RunActivity:obs.speak",
)


def trace_id_of(traceparent: bytes) -> str:
    # W3C: version-traceid-parentid-flags
    return traceparent.decode().split("-")[1]


async def test_one_trace_spans_rest_workflow_activity_and_kafka(obs: Obs) -> None:
    obs.spans.clear()
    async with obs.http() as http:
        answer = await http.post("/v1/runs", json={"pipeline": "obs-speak", "input": {"count": 3}})
    assert answer.status_code == 201
    run_id = answer.json()["run_id"]
    records = await run_records(obs.settings.kafka.bootstrap_servers, obs.topic, run_id)

    def spans_named(name: str) -> list[str]:
        return [
            format(s.context.trace_id, "032x")
            for s in obs.spans.get_finished_spans()
            if s.name == name and s.context is not None
        ]

    rest = [
        s
        for s in obs.spans.get_finished_spans()
        if s.name == "POST /v1/runs"
        and s.attributes
        and s.attributes.get("tidings.run_id") == run_id
    ]
    assert len(rest) == 1
    trace_id = format(rest[0].context.trace_id, "032x")  # type: ignore[union-attr]

    await wait_for(
        lambda: all(trace_id in spans_named(name) for name in CHAIN),
        10,
        f"spans {CHAIN} in trace {trace_id}",
    )
    # Every record of the run, token or run event, carries the trace onward.
    for record in records:
        headers = dict(record.headers)
        assert "traceparent" in headers, record
        assert trace_id_of(headers["traceparent"]) == trace_id

    # The stream plane's half: a socket send span continues the same trace.
    token = next(r for r in records if dict(r.headers)["type"] == b"step.token")
    with span_from_headers(token.headers, "ws.send", run_id=run_id) as span:
        assert format(span.get_span_context().trace_id, "032x") == trace_id
