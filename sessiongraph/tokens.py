"""Access tokens: short-lived, signed (JWT, HS256) credentials minted from an API key."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

TOKEN_PREFIX = "sgt_"
"""What every access token starts with (API keys start with `sg_`, which it never matches)."""

ACCESS_TOKEN_PARAMETER = "access_token"
"""The query parameter that may carry an access token on an SSE GET (RFC 6750 §2.3)."""

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
REQUIRED_CLAIMS = ("org", "kid", "ro", "exp", "iat", "jti")
VERIFIED_TOKENS = 1_000
"""Verified tokens remembered (least recently used forgotten first): a request with a token
is checked by the rate limit and by authentication, and a client sends one token many times.
At most ~10 MB even if every one is scoped to 100 sessions; beyond it tokens are verified
each time, as before."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified access token says about its holder."""

    org_id: str
    key_id: str
    read_only: bool
    session_ids: frozenset[str] | None
    expires_at: datetime
    token_id: str


class AccessTokenRefused(Exception):
    """A credential sent where it may not be: its message says what to send instead."""


class AccessTokens:
    """Signs and verifies access tokens with one server secret; no database involved."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the token secret needs at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret
        self._verified: OrderedDict[str, tuple[TokenClaims, int]] = OrderedDict()

    def mint(
        self,
        org_id: str,
        key_id: str,
        *,
        ttl_seconds: int,
        read_only: bool,
        session_ids: list[str] | None,
        now: datetime | None = None,
    ) -> tuple[str, TokenClaims]:
        """A new token and its claims; `expires_at` is whole seconds, as JWT keeps it."""
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + timedelta(seconds=ttl_seconds)
        payload: dict[str, object] = {
            "org": org_id,
            "kid": key_id,
            "ro": read_only,
            "iat": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        if session_ids is not None:
            payload["sids"] = session_ids
        token = TOKEN_PREFIX + jwt.encode(payload, self._secret, algorithm=ALGORITHM)
        claims = TokenClaims(
            org_id=org_id,
            key_id=key_id,
            read_only=read_only,
            session_ids=None if session_ids is None else frozenset(session_ids),
            expires_at=expires,
            token_id=str(payload["jti"]),
        )
        return token, claims

    def verify(self, token: str) -> TokenClaims | None:
        """The claims of a well-formed, untampered, unexpired token; None for anything else.

        A token's signature and claims are checked once; its expiry every time, as PyJWT
        checks it (`exp` must be later than now)."""
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, expires = remembered
            if expires > time.time():
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]
            return None
        verified = self._verify(token)
        if verified is None:
            return None
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return verified[0]

    def _verify(self, token: str) -> tuple[TokenClaims, int] | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        try:
            payload = jwt.decode(
                token.removeprefix(TOKEN_PREFIX),
                self._secret,
                algorithms=[ALGORITHM],
                # `iat` is informational: a process whose clock runs a little behind the
                # minting one must not refuse a fresh token. `exp` is checked.
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        org, kid, ro, sids = payload["org"], payload["kid"], payload["ro"], payload.get("sids")
        if not (isinstance(org, str) and isinstance(kid, str) and isinstance(ro, bool)):
            return None
        if sids is not None and not (
            isinstance(sids, list) and all(isinstance(s, str) for s in sids)
        ):
            return None
        claims = TokenClaims(
            org_id=org,
            key_id=kid,
            read_only=ro,
            session_ids=None if sids is None else frozenset(sids),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            token_id=str(payload["jti"]),
        )
        return claims, int(payload["exp"])


def is_access_token(credential: str) -> bool:
    """Whether `credential` looks like an access token rather than an API key."""
    return credential.startswith(TOKEN_PREFIX)


def query_access_token(method: str, query: Mapping[str, str]) -> str | None:
    """The access token in an SSE request's `access_token` query parameter, if any.

    Only GET may carry one (EventSource cannot set headers), and only an access token: an
    API key never expires, so it must not sit in URLs, histories and proxy logs. Raises
    AccessTokenRefused (whose message never repeats the credential) otherwise.
    """
    value = query.get(ACCESS_TOKEN_PARAMETER)
    if value is None:
        return None
    if method.upper() != "GET":
        raise AccessTokenRefused(
            f"The {ACCESS_TOKEN_PARAMETER} query parameter is only accepted on GET event "
            "streams; send `Authorization: Bearer <token>` instead."
        )
    if not is_access_token(value):
        raise AccessTokenRefused(
            f"The {ACCESS_TOKEN_PARAMETER} query parameter takes an access token (sgt_...), "
            "never an API key; mint one with createAccessToken."
        )
    return value


def development_token_secret(path: Path) -> str:
    """The token secret kept in `path` (readable by its owner only), made on first use."""
    if path.exists():
        secret = path.read_text().strip()
        if len(secret) >= MIN_SECRET_LENGTH:
            return secret
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
