"""API-key authentication, shared by the REST routes and the WebSocket stream.

A key decides the tenant (``TIDINGS_TENANTS_API_KEYS``). Keys are compared in
constant time against *every* configured key, so neither the position of a
matching key nor the length of a common prefix leaks through timing. Keys are
never logged and never echoed in an error body.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.rest.deps import get_settings
from tidings.errors import Unauthorized
from tidings.settings import Settings


def _digest(value: str) -> bytes:
    # Hashing first gives both sides the same length, so compare_digest's
    # time does not depend on how long the configured key is.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def tenant_from_key(settings: Settings, key: str | None) -> str | None:
    """The tenant an API key belongs to, or ``None`` for a missing/unknown key.

    Used by the REST dependency below and by the WebSocket stream (where the
    key may arrive as the ``access_token`` query parameter).
    """
    if not key:
        return None
    candidate = _digest(key)
    found: str | None = None
    # No early exit: the loop costs the same whichever key (if any) matches.
    for configured, tenant in settings.tenants.api_keys.items():
        if hmac.compare_digest(candidate, _digest(configured)):
            found = tenant
    return found


# auto_error=False: a missing or non-Bearer header is our 401 in our error
# format, not FastAPI's 403; the scheme still appears in the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def require_tenant(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """FastAPI dependency: the caller's tenant, or 401 ``unauthorized``.

    With the app's :class:`gateway.access.AccessControl` a read token is
    accepted too, on the routes and runs it covers (else 403)."""
    key = credentials.credentials if credentials is not None else None
    access = getattr(request.app.state, "access", None)
    if access is not None:
        tenant_: str = await access.for_request(request, key)
        return tenant_
    return require_tenant_by_key(settings, key)


Tenant = Annotated[str, Depends(require_tenant)]


async def require_api_key(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's tenant for routes only an API key may call: a read token is 403."""
    key = credentials.credentials if credentials is not None else None
    access = getattr(request.app.state, "access", None)
    if access is not None:
        tenant_: str = await access.api_key_only(key)
        return tenant_
    return require_tenant_by_key(settings, key)


def require_tenant_by_key(settings: Settings, key: str | None) -> str:
    tenant = tenant_from_key(settings, key)
    if tenant is None:
        message = "missing API key" if key is None else "invalid API key"
        raise Unauthorized(message + " (send Authorization: Bearer <key>)")
    return tenant


ApiKeyTenant = Annotated[str, Depends(require_api_key)]
