"""The agent: an OpenAI Agents SDK agent with one tool, run by a Temporal workflow.

`temporalio.openai_agents` (OpenAIAgentsPlugin, on the agent worker) turns each
model request into an activity and `get_weather` runs as an activity of its
own; the workflow holds the conversation, so a killed worker loses nothing
and no request is made twice once it has returned.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Final

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Runner
    from temporalio.openai_agents.workflow import activity_as_tool

WORKFLOW: Final = "openai_agents.weather"
INSTRUCTIONS: Final = "Answer questions about the weather. Look it up with get_weather first."

WEATHER: Final = {
    "lisbon": {"city": "Lisbon", "sky": "sunny", "celsius": "21", "wind": "a light breeze"},
    "kyoto": {"city": "Kyoto", "sky": "cloudy", "celsius": "14", "wind": "no wind"},
    "oslo": {"city": "Oslo", "sky": "snowing", "celsius": "-3", "wind": "a cold north wind"},
}


def agent_task_queue(base: str) -> str:
    """The agent worker's queue, beside the deployment's (TIDINGS_TEMPORAL_TASK_QUEUE)."""
    return f"{base}.example.openai-agents"


@activity.defn
async def get_weather(city: str) -> str:
    """The weather in a city now, as JSON: sky, temperature in Celsius and wind."""
    # JSON, not a dict: the SDK hands the model str(return value).
    return json.dumps(WEATHER.get(city.strip().lower(), {"city": city, "error": "no station"}))


@workflow.defn(name=WORKFLOW)
class WeatherAgentWorkflow:
    @workflow.run
    async def run(self, question: str) -> str:
        agent: Agent[None] = Agent(
            name="weather",
            instructions=INSTRUCTIONS,
            tools=[activity_as_tool(get_weather, start_to_close_timeout=timedelta(seconds=10))],
        )
        result = await Runner.run(agent, question)
        return str(result.final_output)
