"""Signed tokens: ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``.

Pure functions; the current time is an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from server.errors import ErrorCode, ProtocolError

TokenKind = Literal["visitor", "session"]

# Limits
MAX_TOKEN_CHARS = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def sign(secret: str, claims: dict[str, Any]) -> str:
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


@dataclass(frozen=True)
class Claims:
    kind: TokenKind
    sub: str
    exp: int
    data: dict[str, Any]


def verify(
    secret: str, token: str, kind: TokenKind, now: float, *, allow_expired: bool = False
) -> Claims:
    """Check signature, kind and expiry; raise ``ProtocolError`` (token_invalid / token_expired)."""
    bad = ProtocolError(ErrorCode.TOKEN_INVALID, "token is not valid")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise bad
    body, mac = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (ValueError, TypeError):
        raise bad from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise bad
    try:
        data = json.loads(payload)
    except ValueError:
        raise bad from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise bad
    sub, exp = data.get("sub"), data.get("exp")
    if not isinstance(sub, str) or not isinstance(exp, int):
        raise bad
    if exp <= now and not allow_expired:
        raise ProtocolError(ErrorCode.TOKEN_EXPIRED, "token has expired")
    return Claims(kind=kind, sub=sub, exp=exp, data=data)


def user_hash(site_secret: str, user_id: str) -> str:
    """Identity verification: hex HMAC-SHA256(site secret, user_id)."""
    return hmac.new(site_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def check_user_hash(site_secret: str, user_id: str, given: str) -> bool:
    return hmac.compare_digest(user_hash(site_secret, user_id), given.lower())
