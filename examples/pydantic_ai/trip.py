"""Your own Pydantic AI agent, with your own tools, run durably through Tidings.

`tidings worker --activities trip:activities` registers the agent `trip`;
pipelines/trip.yaml runs it in a step of kind `agent`. Each model request
and each tool call is a Temporal activity (Pydantic AI's Temporal support);
everything the agent streams (tool calls, their results, its text) reaches
every WebSocket watching the run, and a retried model request's partial
output is discarded by the discard rule (docs/agents.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from activities.agent.model import build_agent_model
from tidings.settings import Settings
from workers.build import Clients
from workflows.agent import DurableAgent, build_agent

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


def offline_model() -> FunctionModel:
    """A scripted model, so the example runs with no network: it calls both tools
    at once, then writes a short plan from what they returned (paced by the
    step's `pace_ms`, which reaches it in its model settings)."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
        pace_ms: Any = (info.model_settings or {}).get("tidings_pace_ms", 0)
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
            await asyncio.sleep(float(pace_ms) / 1000)

    return FunctionModel(stream_function=stream, model_name="trip-offline")


def activities(clients: Clients, settings: Settings) -> DurableAgent:
    """The agent `trip`, with its two tools; the worker runs it in the agent workflow."""
    provider = settings.model.provider
    return build_agent(
        build_agent_model(settings.model) if provider == "openai" else offline_model(),
        {"city_facts": city_facts, "convert_budget": convert_budget},
        clients.emitter,
        provider=provider,
        name="trip",
        instructions="Plan a trip with the tools: facts about the city, then the budget.",
    )
