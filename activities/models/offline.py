"""The offline default: an extractive summary of the retrieved passages.

It needs no network and no weights, so ``tidings up`` works on a fresh
machine; the answer says plainly that no model wrote it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from activities.models.provider import Passage

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")
NOTICE = "[offline mode: no language model is configured; this is an extractive summary]"


class OfflineProvider:
    name = "offline"

    def __init__(self, max_sentences: int = 5) -> None:
        self._max_sentences = max_sentences

    async def stream(self, question: str, passages: Sequence[Passage]) -> AsyncIterator[str]:
        for token in self.tokens(question, passages):
            yield token

    def tokens(self, question: str, passages: Sequence[Passage]) -> list[str]:
        text = self.summarise(question, passages)
        words = text.split(" ")
        return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]

    def summarise(self, question: str, passages: Sequence[Passage]) -> str:
        wanted = set(_WORD.findall(question.lower()))
        scored: list[tuple[float, int, str, str]] = []
        order = 0
        for passage in passages:
            for sentence in _SENTENCE.split(passage.text.strip()):
                words = _WORD.findall(sentence.lower())
                if len(words) < 4:
                    continue
                overlap = len(wanted.intersection(words)) / (len(set(words)) ** 0.5)
                scored.append(
                    (overlap + passage.score * 0.01, -order, sentence.strip(), passage.doc)
                )
                order += 1
        if not scored:
            return f"{NOTICE} The corpus has nothing on this question."
        best = sorted(scored, reverse=True)[: self._max_sentences]
        # Back in corpus order, so the summary reads as the sources do.
        best.sort(key=lambda item: -item[1])
        body = " ".join(f"{sentence} [{doc}]" for _, _, sentence, doc in best)
        return f"{NOTICE} {body}"
