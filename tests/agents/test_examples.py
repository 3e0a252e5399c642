"""examples/pydantic_ai end to end: its one command, against a running
gateway, starts its worker, runs its pipeline and watches the agent's tool
calls, results and text arrive; then it stops its worker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.agents.conftest import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_pydantic_ai_example_runs_its_own_agent_through_tidings(
    deployment: Deployment,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "pydantic_ai" / "run.py"),
        "Plan a trip to Kyoto",
        env=deployment.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode()
    assert process.returncode == 0, f"{text}\n{err.decode()[-2000:]}"
    lines = text.splitlines()
    assert 'step plan calls city_facts({"city": "kyoto"})' in lines
    assert 'step plan calls convert_budget({"amount_usd": 1000, "currency": "JPY"})' in lines
    assert any(line.startswith('step plan got city_facts: {"country": "Japan"') for line in lines)
    answer = "Go to Kyoto (Japan) from March to May. A 1000 USD budget is 151000.0 JPY."
    assert f"  plan | {answer} " in lines
    assert any(line.startswith("run completed") for line in lines)
