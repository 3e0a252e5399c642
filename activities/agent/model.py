"""The model behind the agent step, chosen by ``TIDINGS_MODEL_PROVIDER``."""

from __future__ import annotations

from pydantic_ai.models import Model

from activities.agent.offline import offline_model
from tidings.settings import ModelSettings


def build_agent_model(settings: ModelSettings, pace_seconds: float = 0.0) -> Model:
    """``offline``: the scripted FunctionModel; ``openai``: any OpenAI-compatible server
    (the same base URL, model name and key the research pipeline's provider uses)."""
    if settings.provider != "openai":
        return offline_model(pace_seconds)
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    # The key reaches only the SDK's Authorization header. Local servers take
    # any key, and the SDK refuses an empty one.
    key = settings.api_key.get_secret_value() or "unused"
    provider = OpenAIProvider(base_url=settings.base_url, api_key=key)
    return OpenAIChatModel(settings.name, provider=provider)
