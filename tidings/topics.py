"""Topic names of the event plane. One topic per tenant keeps a noisy tenant's
backlog out of everyone else's partitions; the run id is the record key so one
run's events stay in one partition, in order."""

from __future__ import annotations

import re

_TENANT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


def is_valid_tenant(name: str) -> bool:
    """Tenant names become topic names, so they are kept to a safe alphabet."""
    return bool(_TENANT.match(name))


def events_topic(prefix: str, tenant: str) -> str:
    if not is_valid_tenant(tenant):
        raise ValueError(f"invalid tenant name {tenant!r}")
    return f"{prefix}.events.{tenant}"


def tenant_of_topic(prefix: str, topic: str) -> str | None:
    head = f"{prefix}.events."
    if not topic.startswith(head):
        return None
    tenant = topic[len(head) :]
    return tenant if is_valid_tenant(tenant) else None


def dlq_topic(prefix: str) -> str:
    return f"{prefix}.dlq"


def requests_topic(prefix: str) -> str:
    """Work handed to agent services outside the worker (external steps)."""
    return f"{prefix}.requests"


def completions_topic(prefix: str) -> str:
    """Results that agent services post back for external steps."""
    return f"{prefix}.completions"
