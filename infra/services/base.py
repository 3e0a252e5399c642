"""What the stack needs to know about a service to start, check and stop it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from infra.layout import Layout


@dataclass(frozen=True)
class Port:
    number: int
    setting: str  # the variable to change when the port is taken


class Service(ABC):
    """A process of the local stack. ``check`` has no side effects; ``prepare`` may write data."""

    name: str
    stop_grace: float = 10.0

    def __init__(self, layout: Layout, host: str) -> None:
        self.layout = layout
        self.host = host

    @property
    @abstractmethod
    def ports(self) -> list[Port]: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def healthy(self) -> bool:
        """One bounded probe (at most a few seconds): does the service serve requests now?"""

    def check(self) -> None:  # noqa: B027 (an optional hook, not an abstract one)
        """Raise :class:`StackError` if the service cannot start here (binaries, data)."""

    def prepare(self) -> None:  # noqa: B027
        """Create or upgrade its data before the first start (runs once per start)."""

    def attach(self, pid: int, *, started_at: float) -> None:  # noqa: B027 (optional hook)
        """Learn the PID (and wall-clock start) of the process serving it, for probes that
        must tell it from an earlier one."""

    def environment(self) -> Mapping[str, str] | None:
        return None

    def url(self) -> str:
        return f"{self.host}:{self.ports[0].number}" if self.ports else ""
