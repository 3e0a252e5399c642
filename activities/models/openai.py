"""An OpenAI-compatible chat-completions client that streams (``stream: true``).

Works with OpenAI, Ollama, vLLM, llama.cpp's server and the like: it reads the
server-sent-event ``data:`` lines and yields each chunk's delta content. The
API key goes only into the Authorization header; it never reaches a log line or
an error message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.models.provider import Passage
from tidings.errors import ActivityErrorType
from tidings.settings import ModelSettings

SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Cite sources as [doc]. "
    "If the sources do not answer it, say so."
)
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: ModelSettings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    def _request(self, question: str, passages: Sequence[Passage]) -> dict[str, Any]:
        sources = "\n\n".join(f"[{p.doc}] {p.title}\n{p.text}" for p in passages)
        return {
            "model": self._settings.name,
            "stream": True,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"},
            ],
        }

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        key = self._settings.api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def stream(self, question: str, passages: Sequence[Passage]) -> AsyncIterator[str]:
        url = self._settings.base_url.rstrip("/") + "/chat/completions"
        try:
            async with self._http.stream(
                "POST",
                url,
                json=self._request(question, passages),
                headers=self._headers(),
                timeout=self._settings.timeout_seconds,
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ApplicationError(
                        f"model server answered HTTP {response.status_code} at {url}",
                        type=ActivityErrorType.PROVIDER_UNAVAILABLE,
                        non_retryable=response.status_code not in _RETRYABLE_STATUS,
                    )
                async for line in response.aiter_lines():
                    text = _delta(line)
                    if text is None:
                        break
                    if text:
                        yield text
        except httpx.HTTPError as exc:
            # Transport errors are worth a retry; the exception text has no headers.
            raise ApplicationError(
                f"model server unreachable at {url}: {type(exc).__name__}",
                type=ActivityErrorType.PROVIDER_UNAVAILABLE,
            ) from None


def _delta(line: str) -> str | None:
    """The content of one SSE line: ``""`` to skip it, ``None`` at ``[DONE]``."""
    if not line.startswith("data:"):
        return ""
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        chunk = json.loads(payload)
        choices = chunk.get("choices") or []
        content = (choices[0].get("delta") or {}).get("content") if choices else None
    except (json.JSONDecodeError, AttributeError, IndexError):
        raise ApplicationError(
            "model server sent a malformed stream chunk",
            type=ActivityErrorType.PROVIDER_UNAVAILABLE,
        ) from None
    return content if isinstance(content, str) else ""
