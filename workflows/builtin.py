"""Pipelines that ship with Tidings, declared in Python."""

from __future__ import annotations

from workflows.spec import PipelineSpec, load_spec

RESEARCH = load_spec(
    {
        "name": "research",
        "description": (
            "Plans sub-questions, searches the bundled corpus for each in parallel, "
            "streams a drafted answer, optionally waits for a reviewer, then answers."
        ),
        "input": {
            "question": {"type": "string", "min_length": 1, "max_length": 2000},
            "require_approval": {"type": "boolean", "required": False, "default": False},
        },
        "steps": [
            {
                "name": "plan",
                "activity": "research.plan",
                "input": {"question": "$input.question"},
                "start_to_close_seconds": 30,
            },
            {
                "name": "search",
                "activity": "research.search",
                "for_each": "$steps.plan.sub_questions",
                "input": {"question": "$item"},
                "start_to_close_seconds": 30,
            },
            {
                "name": "draft",
                "activity": "research.draft",
                "input": {
                    "question": "$input.question",
                    "results": "$steps.search",
                    "pace_ms": 10,
                },
                "start_to_close_seconds": 300,
                "heartbeat_seconds": 10,
            },
            {
                "name": "review",
                "kind": "approval",
                "when": "$input.require_approval",
                "timeout_seconds": 24 * 3600,
                "on_timeout": "reject",
            },
            {
                "name": "final",
                "activity": "research.finalize",
                "input": {
                    "question": "$input.question",
                    "draft": "$steps.draft",
                    "review": "$steps.review",
                },
                "start_to_close_seconds": 30,
            },
        ],
        "output": "$steps.final",
    },
    source="workflows/builtin.py",
)

AGENT = load_spec(
    {
        "name": "agent",
        "description": (
            "A Pydantic AI agent answers the question with the corpus search tool, "
            "streaming its thinking, tool calls, tool results and answer; reading a "
            "whole document optionally waits for a reviewer's approval."
        ),
        "input": {
            "question": {"type": "string", "min_length": 1, "max_length": 2000},
            "require_approval": {"type": "boolean", "required": False, "default": False},
        },
        "steps": [
            {
                "name": "answer",
                "kind": "agent",
                "input": {
                    "question": "$input.question",
                    "tools": ["search"],
                    "approval_tools": ["fetch_document"],
                    "require_approval": "$input.require_approval",
                    "pace_ms": 10,
                },
                "start_to_close_seconds": 300,
                "heartbeat_seconds": 10,
            },
            {
                # Pydantic AI's deferred tool calls <-> the approve / reject signals.
                "name": "review",
                "kind": "approval",
                "when": "$steps.answer.pending",
                "timeout_seconds": 24 * 3600,
                "on_timeout": "reject",
            },
            {
                "name": "final",
                "kind": "agent",
                "activity": "agent.resume",
                "input": {
                    "answer": "$steps.answer",
                    "review": "$steps.review",
                    "tools": ["search"],
                    "approval_tools": ["fetch_document"],
                    "pace_ms": 10,
                },
                "start_to_close_seconds": 300,
                "heartbeat_seconds": 10,
            },
        ],
        "output": "$steps.final",
    },
    source="workflows/builtin.py",
)

BUILTIN: tuple[PipelineSpec, ...] = (RESEARCH, AGENT)
