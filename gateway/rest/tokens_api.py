"""``POST /v1/tokens``: mint a read token for some runs (gateway/access.py).

Only an API key may mint; the token is bound to the key's tenant, so naming
another tenant's run grants nothing (its stream stays 4404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.access import MAX_RUNS, AccessControl
from gateway.rest.auth import ApiKeyTenant
from gateway.rest.errors import error_responses
from tidings.errors import BadRequest

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=error_responses(401, 422))

RunId = Annotated[str, Field(min_length=1, max_length=255)]


class MintToken(BaseModel):
    model_config = {"extra": "forbid"}

    runs: list[RunId] = Field(min_length=1, max_length=MAX_RUNS, description="Runs it may read.")
    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        description="Lifetime; default TIDINGS_GATEWAY_STREAM_TOKEN_TTL_SECONDS, at most "
        "TIDINGS_GATEWAY_STREAM_TOKEN_MAX_TTL_SECONDS.",
    )


class TokenMinted(BaseModel):
    token: str = Field(description="A read token: pass it as a Bearer token or ?access_token=.")
    expires_at: datetime
    runs: list[str]


@router.post(
    "",
    status_code=201,
    response_model=TokenMinted,
    responses=error_responses(400, 403),
    summary="Mint a read token for some runs (API key only)",
)
async def mint_token(body: MintToken, tenant: ApiKeyTenant, request: Request) -> TokenMinted:
    access: AccessControl = request.app.state.access
    tokens = access.tokens
    if body.ttl_seconds is not None and body.ttl_seconds > tokens.max_ttl_seconds:
        raise BadRequest(f"ttl_seconds must be at most {tokens.max_ttl_seconds}")
    runs = sorted(set(body.runs))
    token, expires_at = tokens.mint(tenant, runs, body.ttl_seconds)
    return TokenMinted(token=token, expires_at=datetime.fromtimestamp(expires_at, UTC), runs=runs)
