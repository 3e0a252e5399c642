"""The framework examples run against the agent tests' deployment: a gateway
and a Tidings worker of their own, with their own tenant and topics."""

from tests.agents.conftest import deployment

__all__ = ["deployment"]
