"""A small TF-IDF index over the demo corpus shipped in ``activities/corpus``.

Good enough for a dozen short documents, deterministic, and free of network
and model weights, so the demo pipeline runs anywhere.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from importlib import resources

from activities.models.provider import Passage

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "without",
    ]
)


def _terms(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOP]


class SearchIndex:
    def __init__(self, docs: dict[str, str]) -> None:
        self._docs: list[tuple[str, str, str, Counter[str]]] = []
        frequency: Counter[str] = Counter()
        for name, text in sorted(docs.items()):
            title, _, body = text.partition("\n")
            body = body.strip()
            terms = Counter(_terms(title + " " + body))
            frequency.update(terms.keys())
            self._docs.append((name, title.lstrip("# ").strip(), body, terms))
        total = max(len(self._docs), 1)
        self._idf = {term: math.log(1 + total / count) for term, count in frequency.items()}

    @classmethod
    def bundled(cls) -> SearchIndex:
        root = resources.files("activities") / "corpus"
        docs = {
            entry.name.removesuffix(".md"): entry.read_text(encoding="utf-8")
            for entry in root.iterdir()
            if entry.name.endswith(".md")
        }
        return cls(docs)

    def __len__(self) -> int:
        return len(self._docs)

    def document(self, doc: str) -> Passage | None:
        """The whole document named ``doc``, or ``None``."""
        for name, title, body, _ in self._docs:
            if name == doc:
                return Passage(doc=name, title=title, text=body)
        return None

    def search(self, query: str, limit: int = 3) -> list[Passage]:
        wanted = Counter(_terms(query))
        scored: list[tuple[float, str, str, str]] = []
        for name, title, body, terms in self._docs:
            length = math.sqrt(sum(terms.values())) or 1.0
            score = sum(
                count * terms[term] * self._idf.get(term, 0.0) for term, count in wanted.items()
            )
            if score > 0:
                scored.append((score / length, name, title, body))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            Passage(doc=name, title=title, text=body, score=round(score, 4))
            for score, name, title, body in scored[:limit]
        ]
