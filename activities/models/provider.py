"""The interface every model provider implements, and the choice between them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from tidings.settings import ModelSettings


@dataclass(frozen=True)
class Passage:
    """A retrieved piece of the corpus the answer may draw on."""

    doc: str
    title: str
    text: str
    score: float = 0.0


class ModelProvider(Protocol):
    """Streams an answer to ``question`` grounded in ``passages``, token by token."""

    name: str

    def stream(self, question: str, passages: Sequence[Passage]) -> AsyncIterator[str]: ...


def build_provider(settings: ModelSettings, http: httpx.AsyncClient) -> ModelProvider:
    # Imported here so the offline default never needs the HTTP client's module graph.
    if settings.provider == "openai":
        from activities.models.openai import OpenAIProvider

        return OpenAIProvider(settings, http)
    from activities.models.offline import OfflineProvider

    return OfflineProvider()
