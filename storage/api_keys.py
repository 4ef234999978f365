"""API keys: each belongs to one organization; only a hash of the key is stored."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any, TypedDict

from pymongo import ASCENDING, ReturnDocument

from storage.clock import utc_now
from storage.database import Database, to_list
from storage.errors import ApiKeyNotFound

KEY_PREFIX = "sg_"
REVOCATION_BATCH = 500
"""Key ids looked up per command when re-checking which keys were revoked."""


class ApiKeyRecord(TypedDict):
    """What is known about a key; never the key itself."""

    id: str
    org_id: str
    name: str | None
    prefix: str
    created_at: Any
    revoked_at: Any


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


def _record(doc: dict[str, Any]) -> ApiKeyRecord:
    return {
        "id": doc["_id"],
        "org_id": doc["org_id"],
        "name": doc.get("name"),
        "prefix": doc["prefix"],
        "created_at": doc["created_at"],
        "revoked_at": doc.get("revoked_at"),
    }


class ApiKeyStore:
    """Creates, lists, revokes and verifies API keys."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, org_id: str, name: str | None = None) -> tuple[ApiKeyRecord, str]:
        """A new key for `org_id`: its record and the key, which is shown once and not kept."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        doc = {
            "_id": "key_" + secrets.token_hex(8),
            "org_id": org_id,
            "name": name,
            "prefix": key[:10],
            "key_hash": hash_key(key),
            "created_at": utc_now(),
            "revoked_at": None,
        }
        await self._db.api_keys.insert_one(doc)
        return _record(doc), key

    async def list(self, org_id: str) -> list[ApiKeyRecord]:
        """Every key of `org_id`, revoked ones included, oldest first."""
        cursor = self._db.api_keys.find({"org_id": org_id}).sort("created_at", ASCENDING)
        return [_record(doc) for doc in await to_list(cursor)]

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Mark the key revoked; it stops authenticating. Revoking twice keeps the first time."""
        doc = await self._db.api_keys.find_one_and_update(
            {"_id": key_id, "revoked_at": None},
            {"$set": {"revoked_at": utc_now()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            doc = await self._db.api_keys.find_one({"_id": key_id})
            if doc is None:
                raise ApiKeyNotFound(key_id)
        return _record(doc)

    async def organization_of(self, key: str) -> str | None:
        """The organization a live key belongs to, or None for an unknown or revoked key."""
        live = await self.live_key(key)
        return None if live is None else live[1]

    async def live_key(self, key: str) -> tuple[str, str] | None:
        """(key id, organization) of a live key, or None for an unknown or revoked key."""
        if not key.startswith(KEY_PREFIX):
            return None
        doc = await self._db.api_keys.find_one(
            {"key_hash": hash_key(key), "revoked_at": None}, {"org_id": 1}
        )
        return None if doc is None else (str(doc["_id"]), str(doc["org_id"]))

    async def revoked_among(self, key_ids: Iterable[str]) -> set[str]:
        """Those of `key_ids` that are revoked or no longer exist."""
        wanted = list(dict.fromkeys(key_ids))
        live: set[str] = set()
        for start in range(0, len(wanted), REVOCATION_BATCH):
            batch = wanted[start : start + REVOCATION_BATCH]
            # `_id` alone in the filter: every server, SecantusDB included, answers it from
            # the `_id` index; the revocation is checked here rather than in the filter.
            cursor = self._db.api_keys.find({"_id": {"$in": batch}}, {"revoked_at": 1})
            live.update(
                str(doc["_id"]) for doc in await to_list(cursor) if doc.get("revoked_at") is None
            )
        return set(wanted) - live
