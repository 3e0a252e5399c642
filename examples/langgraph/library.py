"""The graph and its workflow: a LangGraph agent that looks books up, run by a
Temporal workflow through `temporalio.langgraph` (LangGraphPlugin, on the
graph worker).

Pure and deterministic, so the workflow sandbox can load it: the state is
JSON (LangChain messages as `messages_to_dict` gives them), the route reads
it, and the nodes' bodies live in nodes.py, run by the plugin as activities.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Final, TypedDict

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from langgraph.graph import END, START, StateGraph
    from temporalio.langgraph import graph

GRAPH: Final = "library"
WORKFLOW: Final = "langgraph.library"


class LibraryState(TypedDict):
    question: str
    # LangChain messages in their dict form (messages_to_dict): JSON across
    # the activity boundary, whatever the data converter.
    messages: Annotated[list[dict[str, Any]], operator.add]
    answer: str


def graph_task_queue(base: str) -> str:
    """The graph worker's queue, beside the deployment's (TIDINGS_TEMPORAL_TASK_QUEUE)."""
    return f"{base}.example.langgraph"


async def route(state: LibraryState) -> str:
    """To the tools while the model's last message asks for some, else done.
    (Async: LangGraph runs a plain function on a thread, which a workflow has not.)"""
    last = state["messages"][-1]["data"] if state["messages"] else {}
    return "tools" if last.get("tool_calls") else END


def build(
    agent: Any, tools: Any, activity_options: dict[str, Any]
) -> StateGraph[Any, Any, Any, Any]:
    """agent -> (tools -> agent)* -> end; each node an activity of the workflow."""
    meta = {"execute_in": "activity", **activity_options}
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(LibraryState)
    builder.add_node("agent", agent, metadata=meta)
    builder.add_node("tools", tools, metadata=meta)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder


@workflow.defn(name=WORKFLOW)
class LibraryGraphWorkflow:
    @workflow.run
    async def run(self, question: str) -> str:
        app = graph(GRAPH).compile()
        state = await app.ainvoke({"question": question, "messages": [], "answer": ""})
        return str(state["answer"])
