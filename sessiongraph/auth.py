"""Who is calling: the caller behind an API key or an access token.

An API key is looked up in the database; an access token is verified by its signature
alone, plus its key's liveness, which is checked at most once per key every
SESSIONGRAPH_AUTH_CACHE_SECONDS: revoking a key ends its tokens within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sessiongraph.tokens import AccessTokens, is_access_token
from storage import ApiKeyStore

log = logging.getLogger("sessiongraph.auth")

MIN_RECHECK_SECONDS = 1.0
"""The shortest interval between revocation re-checks, whatever the cache setting."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the organization, the key behind it and what it may do."""

    org_id: str
    expires_at: datetime | None = None
    key_id: str | None = None
    read_only: bool = False
    session_ids: frozenset[str] | None = None
    """The only sessions the caller may see; None: the whole organization."""
    token: bool = False
    """Whether the caller holds an access token rather than the API key itself."""


def bearer_key(authorization: str | None) -> str | None:
    """The key of a `Bearer` authorization value (scheme matched case-insensitively)."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


RevocationListener = Callable[[frozenset[str]], None]
"""Hears the ids of API keys found revoked (their tokens with them)."""


class KeyVerifier:
    """Resolves API keys and access tokens to callers, remembering answers for a few
    seconds so that a busy client does not cost a key lookup per request."""

    def __init__(
        self,
        keys: ApiKeyStore,
        cache_seconds: float,
        max_entries: int = 10_000,
        tokens: AccessTokens | None = None,
    ) -> None:
        self._keys = keys
        self._ttl = cache_seconds
        self._max = max_entries
        self.tokens = tokens
        self._cache: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._key_live: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._holds: dict[str, int] = {}
        self._listeners: list[RevocationListener] = []
        self._task: asyncio.Task[None] | None = None

    async def organization_of(self, key: str | None) -> str | None:
        """The credential's organization, or None when it is missing, unknown or revoked."""
        caller = await self.caller_of(key)
        return None if caller is None else caller.org_id

    async def caller_of(self, credential: str | None) -> Caller | None:
        """The caller an API key or access token stands for; None when it is missing,
        malformed, tampered with, expired, unknown or revoked."""
        if not credential:
            return None
        if is_access_token(credential):
            return await self._token_caller(credential)
        now = time.monotonic()
        cached = self._cache.get(credential)
        if cached is not None and cached[1] > now:
            return cached[0]
        live = await self._keys.live_key(credential)
        if live is None:
            return None
        caller = Caller(org_id=live[1], key_id=live[0])
        if self._ttl > 0:
            _remember(self._cache, credential, (caller, now + self._ttl), self._max)
            _remember(self._key_live, live[0], (True, now + self._ttl), self._max)
        return caller

    def known_key_id(self, credential: str) -> str | None:
        """The id of the API key behind `credential` when known without I/O: an access
        token's (its signature checked, not its key's liveness) or a recently verified
        key's; None otherwise. Names a rate-limit bucket; it does not authenticate."""
        if is_access_token(credential):
            claims = self.tokens.verify(credential) if self.tokens is not None else None
            return None if claims is None else claims.key_id
        cached = self._cache.get(credential)
        return cached[0].key_id if cached is not None else None

    async def _token_caller(self, token: str) -> Caller | None:
        if self.tokens is None:
            return None
        claims = self.tokens.verify(token)
        if claims is None or not await self._key_is_live(claims.key_id):
            return None
        return Caller(
            org_id=claims.org_id,
            expires_at=claims.expires_at,
            key_id=claims.key_id,
            read_only=claims.read_only,
            session_ids=claims.session_ids,
            token=True,
        )

    async def _key_is_live(self, key_id: str) -> bool:
        now = time.monotonic()
        cached = self._key_live.get(key_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        live = not await self._keys.revoked_among([key_id])
        if self._ttl > 0:
            _remember(self._key_live, key_id, (live, now + self._ttl), self._max)
        return live

    @staticmethod
    def expired(caller: Caller) -> bool:
        """Whether the caller's credential has expired (API keys never do)."""
        return caller.expires_at is not None and caller.expires_at <= datetime.now(UTC)

    @contextmanager
    def holding(self, caller: Caller) -> Iterator[None]:
        """While the block runs (an open socket or stream), the caller's key is re-checked
        for revocation every interval, and listeners hear when it is revoked."""
        key_id = caller.key_id
        if key_id is None:
            yield
            return
        self._holds[key_id] = self._holds.get(key_id, 0) + 1
        try:
            yield
        finally:
            left = self._holds[key_id] - 1
            if left:
                self._holds[key_id] = left
            else:
                del self._holds[key_id]

    def on_revoked(self, listener: RevocationListener) -> None:
        """Call `listener` with the ids of held keys each time some are found revoked."""
        self._listeners.append(listener)

    async def recheck(self) -> frozenset[str]:
        """Look up every held key once; forget the revoked ones' cached answers, tell the
        listeners, and return their ids."""
        revoked = frozenset(await self._keys.revoked_among(sorted(self._holds)))
        if revoked:
            now = time.monotonic()
            for key_id in revoked:
                _remember(self._key_live, key_id, (False, now + max(self._ttl, 0)), self._max)
            for credential, (caller, _) in list(self._cache.items()):
                if caller.key_id in revoked:
                    del self._cache[credential]
            for listener in self._listeners:
                listener(revoked)
        return revoked

    def start(self) -> None:
        """Re-check held keys every SESSIONGRAPH_AUTH_CACHE_SECONDS (at least every
        MIN_RECHECK_SECONDS) until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._recheck_forever(), name="revocation-check")

    async def stop(self) -> None:
        """Stop re-checking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _recheck_forever(self) -> None:
        interval = max(self._ttl, MIN_RECHECK_SECONDS)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.recheck()
            except Exception:
                log.warning("revocation re-check failed; trying again", exc_info=True)


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
