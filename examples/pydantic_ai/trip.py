"""Your own Pydantic AI agent, with your own tools, as a Tidings step.

`tidings worker --activities trip:activities` registers the step
`trip.plan`; pipelines/trip.yaml runs it. Everything the agent streams
(tool calls, their results, its text) reaches every WebSocket watching the
run, and a retried attempt's partial output is discarded as for any step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from activities.agent.model import build_agent_model
from activities.agent.publish import run_agent
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.settings import Settings
from workers.build import Clients

CITIES = {
    "lisbon": {"country": "Portugal", "currency": "EUR", "best_months": "April to June"},
    "kyoto": {"country": "Japan", "currency": "JPY", "best_months": "March to May"},
    "oslo": {"country": "Norway", "currency": "NOK", "best_months": "June to August"},
}
RATES_PER_USD = {"EUR": 0.92, "JPY": 151.0, "NOK": 10.6, "USD": 1.0}


def city_facts(city: str) -> dict[str, str]:
    """Country, currency and best months to visit a city."""
    return CITIES.get(city.strip().lower(), {"error": f"no facts about {city}"})


def convert_budget(amount_usd: float, currency: str) -> dict[str, Any]:
    """A budget in US dollars, converted to a local currency."""
    rate = RATES_PER_USD.get(currency.upper())
    if rate is None:
        return {"error": f"no rate for {currency}"}
    return {"currency": currency.upper(), "amount": round(amount_usd * rate, 2)}


def offline_model(pace_seconds: float) -> FunctionModel:
    """A scripted model, so the example runs with no network: it calls both tools
    at once, then writes a short plan from what they returned."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        prompt = next(
            part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, UserPromptPart)
        )
        city = str(prompt).split()[-1].strip("?.!").lower()
        returns: dict[str, Any] = {
            part.tool_name: part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        }
        if not returns:
            calls: DeltaToolCalls = {
                0: DeltaToolCall("city_facts", json.dumps({"city": city}), tool_call_id="facts"),
                1: DeltaToolCall(
                    "convert_budget",
                    json.dumps(
                        {
                            "amount_usd": 1000,
                            "currency": CITIES.get(city, {}).get("currency", "USD"),
                        }
                    ),
                    tool_call_id="budget",
                ),
            }
            yield calls
            return
        facts, budget = returns.get("city_facts", {}), returns.get("convert_budget", {})
        text = (
            f"Go to {city.title()} ({facts.get('country', '?')}) "
            f"from {facts.get('best_months', '?')}. "
            f"A 1000 USD budget is {budget.get('amount', '?')} {budget.get('currency', '')}."
        )
        for word in text.split(" "):
            yield word + " "
            await asyncio.sleep(pace_seconds)

    return FunctionModel(stream_function=stream, model_name="trip-offline")


class TripSteps(StepActivities):
    def __init__(self, clients: Clients, settings: Settings) -> None:
        super().__init__(clients.emitter)
        self._settings = settings

    def _model(self, pace_seconds: float) -> Model:
        if self._settings.model.provider == "openai":
            return build_agent_model(self._settings.model)
        return offline_model(pace_seconds)

    @step("trip.plan")
    async def plan(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        agent = Agent(
            self._model(float(data.get("pace_ms", 0)) / 1000),
            instructions="Plan a trip with the tools: facts about the city, then the budget.",
            tools=[city_facts, convert_budget],
            name="trip",
        )
        question = str(data["question"])
        outcome = await run_agent(
            ctx, agent, question, max_result_chars=self._settings.model.tool_result_max_chars
        )
        return {"question": question, "answer": outcome.output, "tool_calls": outcome.tool_calls}


def activities(clients: Clients, settings: Settings) -> TripSteps:
    return TripSteps(clients, settings)
