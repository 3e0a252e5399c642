"""Resume tokens: opaque, HMAC-SHA256 signed, bound to tenant, run and session.

A token names a session (``sid``) whose progress lives in Redis; it does not
carry the cursor, so acking does not change it. It changes when the gateway
re-issues it with a later expiry: on every (re)connect and once half its life
has passed on a long-lived socket.

Format: ``base64url(json claims) "." base64url(hmac)``. Signed with the current
secret; verified against the current and then every previous secret, so a
secret can rotate without cutting off clients holding older tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tidings.errors import CloseCode

from .errors import StreamClosed

_VERSION = 1
_MAX_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class Claims:
    tenant: str
    run_id: str
    sid: str
    expires_at: int  # unix seconds

    def remaining(self, now: float) -> float:
        return self.expires_at - now


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Decode the one canonical unpadded base64url spelling of some bytes.

    Base64 ignores the spare low bits of a final partial group, so several
    texts decode to the same bytes; a token's text must be exactly what
    :meth:`TokenSigner.issue` wrote, never one of those variants.
    """
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("non-canonical base64url")
    return data


class TokenSigner:
    def __init__(
        self,
        secret: str,
        previous: Sequence[str] = (),
        *,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._keys = [s.encode() for s in (secret, *previous) if s]
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def issue(self, tenant: str, run_id: str, sid: str) -> tuple[str, Claims]:
        claims = Claims(tenant, run_id, sid, int(self._clock()) + self.ttl_seconds)
        body = json.dumps(
            {"v": _VERSION, "t": tenant, "r": run_id, "s": sid, "e": claims.expires_at},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._sign(self._keys[0], body))}", claims

    def verify(self, token: str) -> Claims:
        """Claims of a genuine, unexpired token, else :class:`StreamClosed`
        (4401 forged or malformed, 4410 expired)."""
        forged = StreamClosed(CloseCode.UNAUTHORIZED, "invalid resume token")
        if len(token) > _MAX_TOKEN or token.count(".") != 1:
            raise forged
        body_part, sig_part = token.split(".")
        try:
            body, signature = _unb64(body_part), _unb64(sig_part)
        except ValueError:  # binascii.Error included
            raise forged from None
        if not any(hmac.compare_digest(self._sign(k, body), signature) for k in self._keys):
            raise forged
        try:
            raw = json.loads(body)
            claims = Claims(str(raw["t"]), str(raw["r"]), str(raw["s"]), int(raw["e"]))
        except (ValueError, KeyError, TypeError):
            raise forged from None
        if raw.get("v") != _VERSION:
            raise forged
        if claims.expires_at <= self._clock():
            raise StreamClosed(
                CloseCode.TOKEN_EXPIRED, "resume token expired: subscribe again with from=start"
            )
        return claims

    def due_for_refresh(self, claims: Claims) -> bool:
        return claims.remaining(self._clock()) < self.ttl_seconds / 2

    @staticmethod
    def _sign(key: bytes, body: bytes) -> bytes:
        return hmac.new(key, body, hashlib.sha256).digest()
