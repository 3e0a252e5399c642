"""The model side: every model request the agent makes streams into Tidings.

The SDK's `run_streamed` is not supported in workflows, but the plugin runs
each request in an activity through a `ModelProvider` of our choosing:
`TidingsModelProvider` asks the real model for a *stream* there and
publishes it as the Tidings step's events, as a sub-step per request
(activities.delegate.run_substep): text deltas `step.token`, reasoning
`step.thinking`, a finished function call `step.tool_call`, and the tool
outputs the request carries (what the tools returned since the last
request) `step.tool_result`. It returns the whole response to the workflow,
as `get_response` would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from agents import (
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelProvider,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    OpenAIChatCompletionsModel,
    Tool,
    TResponseInputItem,
    Usage,
)
from agents.items import TResponseOutputItem, TResponseStreamEvent
from openai import APIStatusError, AsyncOpenAI
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_reasoning_item import Summary
from temporalio.exceptions import ApplicationError

from activities.delegate import run_substep, tool_call, tool_result
from activities.emitter import Emitter
from activities.steps import StepContext, StepOutput
from tidings.errors import ActivityErrorType
from tidings.events import EventType
from tidings.settings import ModelSettings as TidingsModelSettings

THINKING_EVENTS = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


class TidingsModel(Model):
    """Streams ``inner`` into the Tidings step its workflow works for."""

    def __init__(self, inner: Model, emitter: Emitter, max_result_chars: int) -> None:
        self._inner = inner
        self._emitter = emitter
        self._max_result_chars = max_result_chars

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        responses: list[ModelResponse] = []

        async def body(ctx: StepContext) -> StepOutput:
            await self._publish_tool_outputs(ctx, input)
            stream = self._inner.stream_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
            try:
                response = await self._publish_stream(ctx, stream)
            except APIStatusError as exc:
                # Only the status: the server's body may quote the request. A
                # rejected request fails the same way again: no retry.
                status = exc.response.status_code
                raise ApplicationError(
                    f"model server answered {status}",
                    type=ActivityErrorType.PROVIDER_UNAVAILABLE,
                    non_retryable=status < 500 and status not in (408, 409, 429),
                ) from None
            responses.append(response)
            calls = [item.name for item in response.output if item.type == "function_call"]
            return {"tool_calls": calls, "response_id": response.response_id}

        await run_substep(self._emitter, "model", body)
        return responses[-1]

    async def _publish_tool_outputs(
        self, ctx: StepContext, input: str | list[TResponseInputItem]
    ) -> None:
        if isinstance(input, str):
            return
        items = [dict(item) for item in input]
        names = {i.get("call_id"): i.get("name") for i in items if i.get("type") == "function_call"}
        # The outputs the tools returned since the model last spoke end the
        # input; earlier ones were published by the request that first carried them.
        fresh: list[dict[str, Any]] = []
        for item in reversed(items):
            if item.get("type") != "function_call_output":
                break
            fresh.insert(0, item)
        for item in fresh:
            call_id = str(item.get("call_id"))
            output = item.get("output")
            content = _decoded(output) if isinstance(output, str) else output
            data = tool_result(call_id, str(names.get(call_id)), content, self._max_result_chars)
            await ctx.emit(EventType.STEP_TOOL_RESULT, data)

    async def _publish_stream(
        self, ctx: StepContext, stream: AsyncIterator[TResponseStreamEvent]
    ) -> ModelResponse:
        done: list[TResponseOutputItem] = []
        final: Response | None = None
        async for event in stream:
            if isinstance(event, ResponseTextDeltaEvent):
                await ctx.token(event.delta)
            elif event.type in THINKING_EVENTS:
                await ctx.emit(EventType.STEP_THINKING, {"text": event.delta}, wait=False)  # type: ignore[union-attr]
            elif isinstance(event, ResponseOutputItemDoneEvent):
                done.append(event.item)
                if isinstance(event.item, ResponseFunctionToolCall):
                    call = event.item
                    await ctx.emit(
                        EventType.STEP_TOOL_CALL, tool_call(call.call_id, call.name, call.arguments)
                    )
            elif isinstance(event, ResponseCompletedEvent):
                final = event.response
        if final is None:
            raise ApplicationError(
                "the model's stream ended without a response",
                type=ActivityErrorType.PROVIDER_UNAVAILABLE,
            )
        usage = Usage(requests=1)
        if final.usage is not None:
            usage = Usage(
                requests=1,
                input_tokens=final.usage.input_tokens,
                output_tokens=final.usage.output_tokens,
                total_tokens=final.usage.total_tokens,
                input_tokens_details=final.usage.input_tokens_details,
                output_tokens_details=final.usage.output_tokens_details,
            )
        # Some servers leave the final response's output empty and send the
        # items one by one: the SDK keeps those, and so do we.
        return ModelResponse(output=final.output or done, usage=usage, response_id=final.id)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        # The workflow asks for whole responses (get_response); the stream is
        # Tidings' to deliver.
        raise NotImplementedError("the agent runs with Runner.run inside its workflow")


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class TidingsModelProvider(ModelProvider):
    def __init__(self, model: Model, emitter: Emitter, max_result_chars: int) -> None:
        self._model = TidingsModel(model, emitter, max_result_chars)

    def get_model(self, model_name: str | None) -> Model:
        return self._model


def build_model(settings: TidingsModelSettings, pace_seconds: float) -> Model:
    """`openai`: any OpenAI-compatible server's chat completions; `offline`: scripted."""
    if settings.provider == "openai":
        client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() or "unused",
            timeout=settings.timeout_seconds,
            # Temporal retries the activity: one retry policy, not two.
            max_retries=0,
        )
        return OpenAIChatCompletionsModel(model=settings.name, openai_client=client)
    return OfflineWeatherModel(pace_seconds)


class OfflineWeatherModel(Model):
    """A scripted model, so the example runs with no network: it thinks, calls
    `get_weather` for the question's last word, then streams an answer from what
    the tool returned; the same every time, call ids included."""

    def __init__(self, pace_seconds: float) -> None:
        self._pace = pace_seconds

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raise NotImplementedError("streamed only")

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        *args: Any,
        **kwargs: Any,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items = [{"type": "message", "content": input}] if isinstance(input, str) else input
        asked = next(str(i.get("content")) for i in items if i.get("type", "message") == "message")
        city = asked.split()[-1].strip("?.!") if asked.split() else "?"
        returned = [i for i in items if i.get("type") == "function_call_output"]
        output: list[TResponseOutputItem]
        seq = 0
        if not returned:
            thought = f"The user asks about {city}: look its weather up first."
            yield ResponseReasoningSummaryTextDeltaEvent(
                delta=thought,
                item_id="think-1",
                output_index=0,
                sequence_number=seq,
                summary_index=0,
                type="response.reasoning_summary_text.delta",
            )
            reasoning = ResponseReasoningItem(
                id="think-1", summary=[Summary(text=thought, type="summary_text")], type="reasoning"
            )
            call = ResponseFunctionToolCall(
                arguments=json.dumps({"city": city}),
                call_id="get_weather-1",
                name="get_weather",
                type="function_call",
                id="call-1",
                status="completed",
            )
            yield ResponseOutputItemDoneEvent(
                item=call, output_index=1, sequence_number=seq + 1, type="response.output_item.done"
            )
            output, seq = [reasoning, call], seq + 2
        else:
            weather = _decoded(str(returned[-1].get("output")))
            text = _answer(weather if isinstance(weather, dict) else {})
            for word in text.split(" "):
                yield ResponseTextDeltaEvent(
                    content_index=0,
                    delta=word + " ",
                    item_id="answer-1",
                    logprobs=[],
                    output_index=0,
                    sequence_number=seq,
                    type="response.output_text.delta",
                )
                seq += 1
                await asyncio.sleep(self._pace)
            message = ResponseOutputMessage(
                id="answer-1",
                content=[ResponseOutputText(text=text, annotations=[], type="output_text")],
                role="assistant",
                status="completed",
                type="message",
            )
            output = [message]
        yield ResponseCompletedEvent(
            response=Response(
                id=f"offline-{len(returned)}",
                created_at=0,
                model="offline",
                object="response",
                output=output,
                parallel_tool_calls=False,
                tool_choice="auto",
                tools=[],
            ),
            sequence_number=seq,
            type="response.completed",
        )


def _answer(weather: dict[str, Any]) -> str:
    if "error" in weather or "city" not in weather:
        return f"I could not find the weather in {weather.get('city', 'that city')}."
    return (
        f"In {weather['city']} it is {weather['celsius']} °C and {weather['sky']}, "
        f"with {weather['wind']}. Dress for it and enjoy the day."
    )
