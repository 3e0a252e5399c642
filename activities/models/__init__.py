"""Model providers behind the AI steps: one interface, an offline default and an
OpenAI-compatible streaming client."""

from activities.models.provider import ModelProvider, Passage, build_provider

__all__ = ["ModelProvider", "Passage", "build_provider"]
