"""The steps of the demo ``research`` pipeline: plan, search, draft, finalize."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.emitter import Emitter
from activities.models.provider import ModelProvider, Passage
from activities.search_index import SearchIndex
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.errors import ActivityErrorType

_SPLIT = re.compile(r"\?|;|\band\b|\balso\b|,", re.IGNORECASE)
MAX_SUB_QUESTIONS = 4


_ENDS = " .!?;,"


def plan_sub_questions(question: str) -> list[str]:
    """The question itself, then its clauses that stand on their own."""
    parts = [question.strip()]
    # Compared without end punctuation, so "Why X?" does not come back as "Why X".
    seen = {question.strip(_ENDS).lower()}
    for clause in _SPLIT.split(question):
        clause = clause.strip(_ENDS)
        if len(clause.split()) >= 3 and clause.lower() not in seen:
            seen.add(clause.lower())
            parts.append(clause)
    return parts[:MAX_SUB_QUESTIONS]


class ResearchSteps(StepActivities):
    def __init__(self, emitter: Emitter, provider: ModelProvider, index: SearchIndex) -> None:
        super().__init__(emitter)
        self._provider = provider
        self._index = index

    @step("research.plan")
    async def plan(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = _question(data)
        sub_questions = plan_sub_questions(question)
        await ctx.progress(sub_questions=sub_questions)
        return {"question": question, "sub_questions": sub_questions}

    @step("research.search")
    async def search(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = _question(data)
        passages = self._index.search(question, limit=int(data.get("limit", 3)))
        await ctx.progress(hits=[p.doc for p in passages])
        return {"question": question, "passages": [asdict(p) for p in passages]}

    @step("research.draft")
    async def draft(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = _question(data)
        passages = _merge_passages(data.get("results") or [])
        # A pace lets demos and tests watch tokens arrive; zero streams at full speed.
        pace = float(data.get("pace_ms", 0)) / 1000
        tokens: list[str] = []
        async for token in self._provider.stream(question, passages):
            tokens.append(token)
            await ctx.token(token)
            if pace:
                await asyncio.sleep(pace)
        text = "".join(tokens)
        return {"text": text, "sources": [p.doc for p in passages], "provider": self._provider.name}

    @step("research.finalize")
    async def finalize(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        draft = data.get("draft") or {}
        review = data.get("review") or {}
        answer = {
            "question": _question(data),
            "answer": draft.get("text", ""),
            "sources": draft.get("sources", []),
            "provider": draft.get("provider"),
            "reviewed": bool(review),
        }
        if review:
            answer["review"] = review
        return answer


def _question(data: dict[str, Any]) -> str:
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ApplicationError(
            "question must be a non-empty string",
            type=ActivityErrorType.INVALID_INPUT,
            non_retryable=True,
        )
    return question


def _merge_passages(results: list[Any]) -> list[Passage]:
    best: dict[str, Passage] = {}
    for result in results:
        for raw in (result or {}).get("passages", []):
            passage = Passage(**raw)
            if passage.doc not in best or passage.score > best[passage.doc].score:
                best[passage.doc] = passage
    return sorted(best.values(), key=lambda p: (-p.score, p.doc))
