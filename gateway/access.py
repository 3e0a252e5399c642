"""Read tokens: who may watch which runs without holding the tenant's API key.

A credential is either an API key (everything its tenant may do) or a *read
token*: a JWT naming a tenant and the runs it may read, and expiring. Read
tokens come from two places:

- the gateway itself (``iss`` ``"tidings"``): ``POST /v1/runs`` answers with one
  for the new run, ``POST /v1/tokens`` mints one for listed runs. HS256 with a
  key derived from ``TIDINGS_GATEWAY_TOKEN_SECRET`` (and, to verify only, each
  of ``TIDINGS_GATEWAY_TOKEN_SECRETS_PREVIOUS``), so one secret rotates both
  kinds of token; the derivation keeps a read token from ever passing for a
  resume token and the other way round.
- the customer's backend: ``TIDINGS_GATEWAY_JWT_ISSUERS`` maps an issuer to its
  tenant and either an HMAC secret (HS256/384/512) or a JWKS URL (RS256/ES256,
  keys cached and fetched again when a token names an unknown ``kid``). ``exp``
  and the configured audience are required; the claim
  ``TIDINGS_GATEWAY_JWT_RUNS_CLAIM`` lists the readable runs.

A read token may open its runs' streams and ``GET`` their status and events
(:data:`READ_ROUTES`); anything else is 403 (4403 on a stream). No message
here ever contains a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import Request

from gateway.stream.errors import StreamClosed, try_again_later
from tidings.errors import CloseCode, ErrorCode, TidingsError, Unauthorized, Unavailable
from tidings.settings import Settings

ISSUER = "tidings"
AUDIENCE = "tidings:read"
MAX_RUNS = 100
_MAX_TOKEN = 8192
_DERIVATION = b"tidings read token v1"
_HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]
_JWKS_ALGORITHMS = ["RS256", "ES256"]
# The routes a read token may call, as (method, route template).
READ_ROUTES = frozenset({("GET", "/v1/runs/{run_id}"), ("GET", "/v1/runs/{run_id}/events")})


@dataclass(frozen=True, slots=True)
class Access:
    """What a credential grants: ``runs`` is ``None`` for an API key (all of
    the tenant's runs and every operation), else the runs it may read."""

    tenant: str
    runs: frozenset[str] | None = None

    @property
    def is_api_key(self) -> bool:
        return self.runs is None

    def may_read(self, run_id: str) -> bool:
        return self.runs is None or run_id in self.runs


class Rejected(Exception):
    """A credential that grants nothing; ``expired`` when it was genuine once."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


def forbidden(message: str) -> TidingsError:
    return TidingsError(message, code=ErrorCode.FORBIDDEN, status=403)


class _ExpiredClose(StreamClosed):
    """4401 whose error frame says ``token_expired``: the client needs a new
    read token, not a fresh subscription (which is what 4410 means)."""

    @property
    def error_code(self) -> str:
        return ErrorCode.TOKEN_EXPIRED


class ReadTokens:
    """The gateway's own read tokens: mint and verify."""

    def __init__(
        self,
        secret: str,
        previous: Sequence[str] = (),
        *,
        ttl_seconds: int,
        max_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [_derive(s) for s in (secret, *previous) if s]
        self.ttl_seconds = ttl_seconds
        self.max_ttl_seconds = max_ttl_seconds
        self._clock = clock

    def mint(
        self, tenant: str, runs: Sequence[str], ttl_seconds: int | None = None
    ) -> tuple[str, int]:
        """A token reading ``runs`` of ``tenant`` and its expiry (unix seconds)."""
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        now = int(self._clock())
        expires_at = now + ttl
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "tid": tenant,
            "runs": sorted(set(runs)),
            "iat": now,
            "exp": expires_at,
        }
        return jwt.encode(claims, self._keys[0], algorithm="HS256"), expires_at

    def verify(self, token: str) -> Access:
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    # Expiry is checked below, against this object's clock.
                    options={
                        "require": ["exp", "iss", "aud"],
                        "verify_exp": False,
                        "verify_iat": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError:
                raise Rejected("invalid read token") from None
            expires_at = claims.get("exp")
            if not isinstance(expires_at, int) or expires_at <= self._clock():
                raise Rejected("read token expired", expired=True)
            return _access(str(claims.get("tid", "")), claims.get("runs"))
        raise Rejected("invalid read token")


class JwksKeys:
    """One issuer's JWKS: fetched on first use, again when a token names a
    ``kid`` it lacks (at most once per ``min_refresh_seconds``, so forged kids
    cannot make the gateway hammer the issuer), and after ``max_age_seconds``."""

    def __init__(
        self,
        url: str,
        *,
        min_refresh_seconds: float,
        max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK:
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self._max_age
            may_refresh = self._fetched_at is None or now - self._fetched_at >= self._min_refresh
            if stale or (kid not in self._keys and may_refresh):
                await self._fetch()
        found = self._keys.get(kid)
        if found is None:
            raise Rejected("token signed with an unknown key")
        return found

    async def _fetch(self) -> None:
        self.fetches += 1
        self._fetched_at = self._clock()
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                response = await http.get(self.url)
                response.raise_for_status()
                document = response.json()
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            # Keep the keys we had: an issuer's hiccup must not log everyone out.
            if not self._keys:
                raise Unavailable("cannot fetch the token issuer's keys; retry later") from exc
            return
        self._keys = {k.key_id: k for k in keys if k.key_id}


@dataclass(frozen=True)
class _Issuer:
    tenant: str
    secret: str | None
    jwks: JwksKeys | None


class AccessControl:
    """Turns a credential into an :class:`Access`, and answers the REST and
    stream questions (may this request / this socket go on?)."""

    def __init__(
        self,
        settings: Settings,
        api_key: Callable[[str], str | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        gateway = settings.gateway
        self._api_key = api_key
        self._production = not settings.runtime.is_local
        self.tokens = ReadTokens(
            gateway.token_secret.get_secret_value(),
            [s.get_secret_value() for s in gateway.token_secrets_previous],
            ttl_seconds=gateway.stream_token_ttl_seconds,
            max_ttl_seconds=gateway.stream_token_max_ttl_seconds,
            clock=clock,
        )
        self._audience = gateway.jwt_audience
        self._runs_claim = gateway.jwt_runs_claim
        self._issuers: dict[str, _Issuer] = {}
        for name, config in gateway.jwt_issuers.items():
            jwks = None
            if config.jwks_url:
                jwks = JwksKeys(
                    config.jwks_url, min_refresh_seconds=gateway.jwks_min_refresh_seconds
                )
            secret = config.secret.get_secret_value() if config.secret else None
            self._issuers[name] = _Issuer(config.tenant, secret, jwks)

    async def resolve(self, credential: str) -> Access:
        """The credential's access, else :class:`Rejected` (or 503 :class:`Unavailable`
        when an issuer's keys cannot be fetched)."""
        tenant = self._api_key(credential)
        if tenant is not None:
            return Access(tenant)
        if len(credential) > _MAX_TOKEN or credential.count(".") != 2:
            raise Rejected("invalid API key or token")
        try:
            unverified = jwt.decode(credential, options={"verify_signature": False})
            header = jwt.get_unverified_header(credential)
        except jwt.PyJWTError:
            raise Rejected("invalid API key or token") from None
        issuer = unverified.get("iss")
        if issuer == ISSUER:
            return self.tokens.verify(credential)
        found = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if found is None or not isinstance(issuer, str):
            raise Rejected("invalid API key or token")
        return await self._verify_external(credential, issuer, found, header)

    async def _verify_external(
        self, token: str, issuer: str, found: _Issuer, header: dict[str, Any]
    ) -> Access:
        key: Any
        if found.jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise Rejected("token without a key id (kid)")
            key, algorithms = await found.jwks.key(kid), _JWKS_ALGORITHMS
        else:
            key, algorithms = found.secret, _HMAC_ALGORITHMS
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Rejected("token expired", expired=True) from None
        except jwt.InvalidTokenError:
            raise Rejected("invalid token") from None
        return _access(found.tenant, claims.get(self._runs_claim))

    async def for_request(self, request: Request, credential: str | None) -> str:
        """The tenant a REST request acts for, or 401/403."""
        if not credential:
            raise Unauthorized("missing API key (send Authorization: Bearer <key>)")
        try:
            access = await self.resolve(credential)
        except Rejected as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.UNAUTHORIZED
            raise Unauthorized(exc.message, code=code) from None
        if access.is_api_key:
            return access.tenant
        route = getattr(request.scope.get("route"), "path", None)
        if (request.method, route) not in READ_ROUTES:
            raise forbidden("a read token may only read its runs; this needs an API key")
        if not access.may_read(str(request.path_params.get("run_id", ""))):
            raise forbidden("this read token does not cover this run")
        return access.tenant

    async def api_key_only(self, credential: str | None) -> str:
        if not credential:
            raise Unauthorized("missing API key (send Authorization: Bearer <key>)")
        tenant = self._api_key(credential)
        if tenant is not None:
            return tenant
        try:
            await self.resolve(credential)
        except Rejected as exc:
            code = ErrorCode.TOKEN_EXPIRED if exc.expired else ErrorCode.UNAUTHORIZED
            raise Unauthorized(exc.message, code=code) from None
        raise forbidden("a read token cannot do this; it needs an API key")

    async def for_stream(self, credential: str, run_id: str, *, in_query: bool) -> str:
        """The tenant a stream socket reads for, else :class:`StreamClosed`."""
        if not credential:
            raise StreamClosed(CloseCode.UNAUTHORIZED, "missing or invalid API key or token")
        try:
            access = await self.resolve(credential)
        except Rejected as exc:
            if exc.expired:
                raise _ExpiredClose(CloseCode.UNAUTHORIZED, exc.message) from None
            raise StreamClosed(CloseCode.UNAUTHORIZED, "invalid API key or token") from None
        except Unavailable:
            raise try_again_later_issuer() from None
        if access.is_api_key and in_query and self._production:
            # Query strings end up in proxy and browser history logs; a key
            # there would hand out the tenant. Read tokens expire and read only.
            raise StreamClosed(
                CloseCode.UNAUTHORIZED,
                "API keys are refused in the query string in production; send a header "
                "or use a read token",
            )
        if not access.may_read(run_id):
            raise StreamClosed(CloseCode.FORBIDDEN, "this read token does not cover this run")
        return access.tenant


def try_again_later_issuer() -> StreamClosed:
    closed = try_again_later(0)
    return StreamClosed(closed.code, "cannot fetch the token issuer's keys; retry later")


def _derive(secret: str) -> bytes:
    return hmac.new(secret.encode(), _DERIVATION, hashlib.sha256).digest()


def _access(tenant: str, runs: Any) -> Access:
    if not tenant:
        raise Rejected("invalid token")
    if (
        not isinstance(runs, list)
        or not runs
        or len(runs) > MAX_RUNS
        or not all(isinstance(r, str) and 0 < len(r) <= 255 for r in runs)
    ):
        raise Rejected("token lists no readable runs")
    return Access(tenant, frozenset(runs))
