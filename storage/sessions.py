"""Sessions: create, read, list, update and delete, always inside one organization."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.clock import utc_now
from storage.database import Database, to_list
from storage.documents import (
    PUBLIC_FIELDS,
    message_documents,
    message_from_document,
    session_from_document,
)
from storage.errors import SessionNotFound
from storage.records import (
    MessageRecord,
    NewMessage,
    NewSession,
    Page,
    Publisher,
    SessionChanged,
    SessionChanges,
    SessionOrderField,
    SessionPosition,
    SessionQuery,
    SessionRecord,
    TimeRange,
)
from storage.secret_box import SecretBox


class SessionStore:
    """Reads and writes the `sessions` collection (and, on create and delete, `messages`)."""

    def __init__(
        self, db: Database, publish: Publisher | None = None, secrets: SecretBox | None = None
    ) -> None:
        self._db = db
        self._publish = publish
        self._secrets = secrets

    async def create(
        self, org_id: str, new: NewSession, messages: list[NewMessage]
    ) -> tuple[SessionRecord, list[MessageRecord]]:
        """Store a new session with its initial messages (seq 1..n), all or nothing."""
        now = utc_now()
        session_id = str(uuid.uuid4())
        doc: dict[str, Any] = {
            "_id": session_id,
            "org_id": org_id,
            **new,
            "expires_at": now + timedelta(seconds=new["expiration_seconds"]),
            "created_at": now,
            "updated_at": now,
            "message_count": len(messages),
        }
        if self._secrets is not None and doc.get("phone_number_secrets"):
            doc["phone_number_secrets"] = self._secrets.seal(doc["phone_number_secrets"])
        message_docs = message_documents(org_id, session_id, 1, messages, now)

        async def write(session: Any) -> None:
            await self._db.sessions.insert_one(doc, session=session)
            if message_docs:
                await self._db.messages.insert_many(message_docs, session=session)

        await self._db.in_transaction(write)
        doc.pop("phone_number_secrets", None)
        return session_from_document(doc, now), [message_from_document(m) for m in message_docs]

    async def get(self, org_id: str, session_id: str) -> SessionRecord | None:
        """The session, or None when it does not exist in this organization."""
        doc = await self._db.sessions.find_one({"_id": session_id, "org_id": org_id}, PUBLIC_FIELDS)
        return None if doc is None else session_from_document(doc)

    async def get_many(self, org_id: str, session_ids: list[str]) -> dict[str, SessionRecord]:
        """The sessions among `session_ids` that exist in this organization, by id."""
        cursor = self._db.sessions.find(
            {"_id": {"$in": session_ids}, "org_id": org_id}, PUBLIC_FIELDS
        )
        now = utc_now()
        return {doc["_id"]: session_from_document(doc, now) for doc in await to_list(cursor)}

    async def list(
        self,
        org_id: str,
        query: SessionQuery,
        *,
        order_by: SessionOrderField = "created_at",
        descending: bool = True,
        first: int | None = None,
        after: SessionPosition | None = None,
        last: int | None = None,
        before: SessionPosition | None = None,
    ) -> Page[SessionRecord]:
        """One page of sessions in (order_by, id) order, by keyset: `first` items after
        `after`, or `last` items before `before`."""
        now = utc_now()
        conditions = [_query_filter(org_id, query, now)]
        if after is not None:
            conditions.append(_beyond(order_by, after, descending))
        if before is not None:
            conditions.append(_beyond(order_by, before, not descending))
        backward = last is not None and first is None
        limit = last if backward else first
        assert limit is not None, "the caller picks a page size"
        direction = DESCENDING if descending != backward else ASCENDING
        cursor = (
            self._db.sessions.find({"$and": conditions}, PUBLIC_FIELDS)
            .sort([(order_by, direction), ("_id", direction)])
            .limit(limit + 1)
        )
        docs = await to_list(cursor)
        more = len(docs) > limit
        docs = docs[:limit]
        if backward:
            docs.reverse()
        items = [session_from_document(doc, now) for doc in docs]
        if backward:
            return Page(items, has_next=before is not None, has_previous=more)
        return Page(items, has_next=more, has_previous=after is not None)

    async def count(self, org_id: str, query: SessionQuery) -> int:
        """How many sessions match `query`."""
        total: int = await self._db.sessions.count_documents(
            _query_filter(org_id, query, utc_now())
        )
        return total

    async def update(self, org_id: str, session_id: str, changes: SessionChanges) -> SessionRecord:
        """Apply `changes`; a new expiration moves `expires_at` from the creation time."""
        now = utc_now()
        fields: dict[str, Any] = {**changes, "updated_at": now}
        update: dict[str, Any] = {"$set": fields}
        if "expiration_seconds" in changes:
            current = await self._db.sessions.find_one(
                {"_id": session_id, "org_id": org_id}, {"created_at": 1, "completed_by_expiry": 1}
            )
            if current is None:
                raise SessionNotFound(session_id)
            fields["expires_at"] = current["created_at"] + timedelta(
                seconds=changes["expiration_seconds"]
            )
            if current.get("completed_by_expiry"):
                # Only the expiry sweep completed it: a new expiry reopens it, as it would
                # have before the sweep (storage/session_events.py).
                fields.setdefault("status", "active")
                update["$unset"] = {"completed_by_expiry": ""}
        doc = await self._db.sessions.find_one_and_update(
            {"_id": session_id, "org_id": org_id},
            update,
            projection=PUBLIC_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise SessionNotFound(session_id)
        record = session_from_document(doc, now)
        if self._publish is not None:
            self._publish(SessionChanged(session_id, record))
        return record

    async def delete(self, org_id: str, session_id: str) -> SessionRecord:
        """Remove the session and its messages together; return the session as it was."""

        async def remove(session: Any) -> dict[str, Any]:
            doc: dict[str, Any] | None = await self._db.sessions.find_one_and_delete(
                {"_id": session_id, "org_id": org_id}, projection=PUBLIC_FIELDS, session=session
            )
            if doc is None:
                raise SessionNotFound(session_id)
            scope = {"session_id": session_id, "org_id": org_id}
            await self._db.deleted_sessions.replace_one(
                {"_id": session_id},
                {"org_id": org_id, "deleted_at": utc_now()},
                upsert=True,
                session=session,
            )
            await self._db.messages.delete_many(scope, session=session)
            await self._db.idempotency.delete_many(scope, session=session)
            return doc

        record = session_from_document(await self._db.in_transaction(remove))
        if self._publish is not None:
            self._publish(SessionChanged(session_id, None))
        return record


def _query_filter(org_id: str, query: SessionQuery, now: datetime) -> dict[str, Any]:
    match: dict[str, Any] = {"org_id": org_id}
    if query.status == "active":
        match["status"] = "active"
        match["expires_at"] = {"$gt": now}
    elif query.status == "completed":
        match["$or"] = [{"status": "completed"}, {"expires_at": {"$lte": now}}]
    if query.name is not None:
        match["name"] = query.name
    for field, values in (
        ("_id", query.ids),
        ("assistant_id", query.assistant_ids),
        ("phone_number_id", query.phone_number_ids),
        ("customer.number", query.customer_numbers),
    ):
        if values is not None:
            match[field] = values[0] if len(values) == 1 else {"$in": list(values)}
    for field, time_range in (("created_at", query.created_at), ("updated_at", query.updated_at)):
        if time_range is not None:
            match[field] = _time_bounds(time_range)
    return match


def _time_bounds(time_range: TimeRange) -> dict[str, datetime]:
    bounds = {"$gt": time_range.gt, "$gte": time_range.gte, "$lt": time_range.lt}
    bounds["$lte"] = time_range.lte
    return {op: value for op, value in bounds.items() if value is not None}


def _beyond(order_by: str, position: SessionPosition, descending: bool) -> dict[str, Any]:
    """Documents that come after `position` when sorting by (order_by, _id)."""
    op = "$lt" if descending else "$gt"
    return {
        "$or": [
            {order_by: {op: position.at}},
            {order_by: position.at, "_id": {op: position.id}},
        ]
    }
