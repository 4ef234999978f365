"""Who is calling: the organization behind an `Authorization: Bearer <key>` header."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from storage import ApiKeyStore


def bearer_key(authorization: str | None) -> str | None:
    """The key of a `Bearer` authorization value (scheme matched case-insensitively)."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: its organization, and when its credential stops being
    valid (None: an API key, valid until revoked). Live connections and streams end then."""

    org_id: str
    expires_at: datetime | None = None


class KeyVerifier:
    """Resolves API keys to organizations, remembering answers for a few seconds so that
    a busy client does not cost a key lookup per request."""

    def __init__(self, keys: ApiKeyStore, cache_seconds: float, max_entries: int = 10_000) -> None:
        self._keys = keys
        self._ttl = cache_seconds
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def caller_of(self, key: str | None) -> Caller | None:
        """The caller a key authenticates, or None when it is missing, unknown or revoked."""
        org_id = await self.organization_of(key)
        return Caller(org_id) if org_id is not None else None

    async def organization_of(self, key: str | None) -> str | None:
        """The key's organization, or None when the key is missing, unknown or revoked."""
        if key is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        org_id = await self._keys.organization_of(key)
        if org_id is not None and self._ttl > 0:
            self._cache[key] = (org_id, now + self._ttl)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return org_id
