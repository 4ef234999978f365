"""Persisted GraphQL documents: trusted ones an operator registers for every organization,
and the ones clients register per organization with automatic persisted queries (APQ)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import timedelta
from typing import Any, TypedDict

from pymongo import ASCENDING, UpdateOne
from pymongo.errors import DuplicateKeyError

from storage.clock import utc_now
from storage.database import Database, to_list

DOCUMENT_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
"""A document's id: `sha256:` and the lowercase hex SHA-256 of its exact UTF-8 text."""

MAX_DOCUMENT_BYTES = 64 * 1024
"""The largest document kept, in UTF-8 bytes (an operation past the 4,000-token limit
is far smaller; this bounds what one registration can store)."""

MAX_REGISTERED_PER_ORG = 1000
"""APQ registrations kept per organization; past it, documents run but are not kept."""

REGISTERED_TTL = timedelta(days=7)
"""How long an APQ registration is kept; a client whose hash expired sends the text again."""


class DocumentTooLarge(ValueError):
    """A document longer than MAX_DOCUMENT_BYTES."""


class TrustedDocument(TypedDict):
    """A document an operator registered, and when."""

    id: str
    document: str
    created_at: Any


def document_id(text: str) -> str:
    """The id of a document: `sha256:<hex of its exact text>`."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _checked(document_id_: str, text: str) -> None:
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            f"document {document_id_}: {len(text.encode())} bytes, more than the "
            f"{MAX_DOCUMENT_BYTES} kept"
        )
    if document_id(text) != document_id_:
        raise ValueError(f"document {document_id_}: its text hashes to {document_id(text)}")


class PersistedDocumentStore:
    """Reads and writes both kinds of persisted documents; an id always names the same text,
    so a stored document is never changed, only added or removed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def trusted(self, document_id_: str) -> str | None:
        """The text of a trusted document, or None."""
        doc = await self._db.trusted_documents.find_one({"_id": document_id_}, {"document": 1})
        return None if doc is None else str(doc["document"])

    async def add_trusted(self, documents: dict[str, str]) -> int:
        """Trust `documents` ({id: text}); each id is checked against its text first, and
        nothing is stored unless all are right. Returns how many were new."""
        for id_, text in documents.items():
            _checked(id_, text)
        if not documents:
            return 0
        now = utc_now()
        result = await self._db.trusted_documents.bulk_write(
            [
                UpdateOne(
                    {"_id": id_},
                    {"$setOnInsert": {"document": text, "created_at": now}},
                    upsert=True,
                )
                for id_, text in documents.items()
            ],
            ordered=False,
        )
        return int(result.upserted_count)

    async def list_trusted(self) -> list[TrustedDocument]:
        """Every trusted document, oldest first."""
        cursor = self._db.trusted_documents.find().sort("created_at", ASCENDING)
        return [
            {"id": doc["_id"], "document": doc["document"], "created_at": doc["created_at"]}
            for doc in await to_list(cursor)
        ]

    async def remove_trusted(self, document_id_: str) -> bool:
        """Stop trusting a document; False when it was not trusted."""
        result = await self._db.trusted_documents.delete_one({"_id": document_id_})
        return bool(result.deleted_count)

    async def registered(self, org_id: str, document_id_: str) -> str | None:
        """The text `org_id` registered under `document_id_` with APQ, or None."""
        doc = await self._db.registered_documents.find_one(
            {"_id": _registered_key(org_id, document_id_), "org_id": org_id}, {"document": 1}
        )
        return None if doc is None else str(doc["document"])

    async def register(self, org_id: str, document_id_: str, text: str) -> bool:
        """Keep `text` for `org_id` under its id (checked) for REGISTERED_TTL; False when the
        organization already keeps MAX_REGISTERED_PER_ORG documents."""
        _checked(document_id_, text)
        kept = await self._db.registered_documents.count_documents(
            {"org_id": org_id}, limit=MAX_REGISTERED_PER_ORG
        )
        if kept >= MAX_REGISTERED_PER_ORG:
            return False
        now = utc_now()
        # A duplicate key: registered at the same moment by another request, the same text.
        with contextlib.suppress(DuplicateKeyError):
            await self._db.registered_documents.update_one(
                {"_id": _registered_key(org_id, document_id_), "org_id": org_id},
                {
                    "$setOnInsert": {"document": text, "created_at": now},
                    "$set": {"expires_at": now + REGISTERED_TTL},
                },
                upsert=True,
            )
        return True


def _registered_key(org_id: str, document_id_: str) -> str:
    return f"{org_id}/{document_id_}"
