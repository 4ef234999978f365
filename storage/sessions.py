"""Sessions: create, read, list, update and delete, always inside one organization."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from storage.clock import utc_now
from storage.database import Database, Planner, to_list, updated
from storage.documents import (
    PUBLIC_FIELDS,
    SESSION_FIELDS,
    message_documents,
    message_from_document,
    session_from_document,
)
from storage.errors import IdempotencyKeyPending, IdempotencyKeyReused, SessionNotFound
from storage.idempotency import create_record_id, request_digest
from storage.message_windows import windows_after
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
)
from storage.secret_box import SecretBox
from storage.session_counts import SessionCounter
from storage.session_filters import (
    after_position,
    descending_key_bounds,
    disjoint_branches,
    query_filter,
    scannable,
    served_as_it_stands,
    served_part,
    windowed,
)

Documents = list[dict[str, Any]]
SessionIds = list[str]
FIRST_WINDOW = timedelta(minutes=1)
"""The first window of an unfiltered page on a "simple" planner (see `SessionStore._scan`)."""
WINDOW_GROWTH = 4
WINDOW_GROWTH_EMPTY = 16
WINDOW_MARGIN = 1.2
"""How much more than the page needs a window sized by density is made to hold."""
LAST_WINDOW = timedelta(days=3650)
"""Past this width the next window is open-ended: the rest of the organization's range."""
WINDOWS_MAX = math.ceil(math.log(LAST_WINDOW / FIRST_WINDOW, WINDOW_GROWTH)) + 1
"""The most windows one page reads before the open-ended rest (as many as windows growing
WINDOW_GROWTH times each take to pass LAST_WINDOW)."""
SCAN_QUERIES_MAX = WINDOWS_MAX + 2
"""The most queries one page costs on a "simple" planner: the ties at the cursor, the windows
and the open-ended rest."""


def next_span(
    span: timedelta, got: int, measured: timedelta, measured_found: int, remaining: int
) -> timedelta:
    """The width of `SessionStore._scan`'s next window, after one of width `span` found `got`
    sessions, the bounded windows so far (`measured` wide) `measured_found`, and `remaining`
    are still wanted.

    Once a bounded window found sessions, the width that their density says holds the rest
    of the page with WINDOW_MARGIN to spare (that planner reads every document of a window,
    so a window far wider than the page costs what it holds), never narrower than the last
    and at most WINDOW_GROWTH_EMPTY times its width; before that, WINDOW_GROWTH times the
    last when it found some (the first window, open towards the future), else
    WINDOW_GROWTH_EMPTY times.
    """
    if not measured_found:
        return span * (WINDOW_GROWTH if got else WINDOW_GROWTH_EMPTY)
    estimate = measured * (remaining * WINDOW_MARGIN / measured_found)
    return min(max(estimate, span), span * WINDOW_GROWTH_EMPTY)


def fields(windows: bool) -> dict[str, Any]:
    """The projection of a session read, with or without the message windows."""
    return PUBLIC_FIELDS if windows else SESSION_FIELDS


class SessionStore:
    """Reads and writes the `sessions` collection (and, on create and delete, `messages` and
    the organization's session counter)."""

    def __init__(
        self, db: Database, publish: Publisher | None = None, secrets: SecretBox | None = None
    ) -> None:
        self._db = db
        self._counter = SessionCounter(db)
        self._publish = publish
        self._secrets = secrets

    @property
    def planner(self) -> Planner:
        """The database's planner, which chooses the shape of the list queries."""
        return self._db.planner

    def _codec(self, windows: bool) -> CodecOptions[dict[str, Any]] | None:
        """What the message windows of the sessions read are decoded with, when wanted: the
        messages collection's codec options, as a read of the messages would use."""
        if not windows:
            return None
        codec: CodecOptions[dict[str, Any]] = self._db.messages.codec_options
        return codec

    async def create(
        self,
        org_id: str,
        new: NewSession,
        messages: list[NewMessage],
        idempotency_key: str | None = None,
    ) -> tuple[SessionRecord, list[MessageRecord]]:
        """Store a new session with its initial messages (seq 1..n), all or nothing.

        With an idempotency key, a retry with the same input returns the session stored the
        first time, with its initial messages, instead of creating another; the key with a
        different input raises `IdempotencyKeyReused`. The key's record is written in the
        session's transaction, so concurrent retries create one session between them.
        """
        digest = ""
        secrets = new["phone_number_secrets"]
        if idempotency_key is not None:
            # Secrets stay out of the digest, which is stored as it is: a retry's secrets are
            # compared with the session's own, sealed like any other.
            public = {**new, "phone_number_secrets": None}
            digest = request_digest({"session": public, "messages": messages})
            replay = await self._replay(org_id, idempotency_key, digest, secrets)
            if replay is not None:
                return replay
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
        doc.update(windows_after({}, 0, message_docs))
        key_doc: dict[str, Any] | None = None
        if idempotency_key is not None:
            key_doc = {
                "_id": create_record_id(org_id, idempotency_key),
                "org_id": org_id,
                "session_id": session_id,
                "count": len(messages),
                "digest": digest,
                "created_at": now,
            }

        async def write(session: Any) -> None:
            if key_doc is not None:
                # First: a concurrent request with the same key stops here.
                await self._db.idempotency.insert_one(key_doc, session=session)
            try:
                await self._db.sessions.insert_one(doc, session=session)
                if message_docs:
                    await self._db.messages.insert_many(message_docs, session=session)
                completed = int(doc["status"] == "completed")
                await self._counter.add(org_id, 1, session, completed=completed)
            except BaseException:
                if key_doc is not None and session is None:
                    # Without a transaction nothing else frees the key for a retry.
                    await self._db.idempotency.delete_one({"_id": key_doc["_id"]})
                raise

        try:
            await self._db.in_transaction(write)
        except DuplicateKeyError:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key stored its session first.
            replay = await self._replay(org_id, idempotency_key, digest, secrets)
            if replay is None:
                raise
            return replay
        doc.pop("phone_number_secrets", None)
        return session_from_document(doc, now), [message_from_document(m) for m in message_docs]

    async def _replay(
        self, org_id: str, key: str, digest: str, secrets: dict[str, Any] | None
    ) -> tuple[SessionRecord, list[MessageRecord]] | None:
        """The session created earlier with `key` and its initial messages, or None."""
        earlier = await self._db.idempotency.find_one({"_id": create_record_id(org_id, key)})
        if earlier is None:
            return None
        reused = IdempotencyKeyReused(key, "a createSession with a different input")
        if earlier["digest"] != digest:
            raise reused
        session_id = earlier["session_id"]
        doc = await self._db.sessions.find_one({"_id": session_id, "org_id": org_id})
        if doc is None:
            # Deleting a session removes its key, so the first request is still writing.
            raise IdempotencyKeyPending(key)
        stored = doc.pop("phone_number_secrets", None)
        if stored and self._secrets is not None:
            stored = self._secrets.open(stored)
        if (stored or None) != (secrets or None):
            raise reused
        initial: list[dict[str, Any]] = []
        if earlier["count"]:
            cursor = self._db.messages.find(
                {"session_id": session_id, "seq": {"$gte": 1, "$lte": earlier["count"]}}
            ).sort([("session_id", ASCENDING), ("seq", ASCENDING)])
            initial = [m for m in await to_list(cursor) if m["org_id"] == org_id]
        return session_from_document(doc), [message_from_document(m) for m in initial]

    async def get(self, org_id: str, session_id: str) -> SessionRecord | None:
        """The session, or None when it does not exist in this organization."""
        doc = await self._db.sessions.find_one(
            {"_id": session_id, "org_id": org_id}, SESSION_FIELDS
        )
        return None if doc is None else session_from_document(doc)

    async def get_many(
        self, org_id: str, session_ids: list[str], *, windows: bool = False
    ) -> dict[str, SessionRecord]:
        """The sessions among `session_ids` that exist in this organization, by id; with
        `windows`, each with its message windows (see `session_from_document`)."""
        cursor = self._db.sessions.find(
            {"_id": {"$in": session_ids}, "org_id": org_id}, fields(windows)
        )
        now = utc_now()
        codec = self._codec(windows)
        return {
            doc["_id"]: session_from_document(doc, now, windows=codec)
            for doc in await to_list(cursor)
        }

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
        windows: bool = False,
    ) -> Page[SessionRecord]:
        """One page of sessions in (order_by, id) order, by keyset: `first` items after
        `after`, or `last` items before `before`; with `windows`, each with its message
        windows (see `session_from_document`)."""
        now = utc_now()
        base = query_filter(org_id, query, now)
        backward = last is not None and first is None
        limit = last if backward else first
        assert limit is not None, "the caller picks a page size"
        scan_descending = descending != backward
        start = before if backward else after
        if self._db.planner == "simple" and scannable(base, order_by, after, before):
            docs: Documents = await self._scan(
                base, order_by, scan_descending, start, limit + 1, now, fields(windows)
            )
        else:
            conditions = [base]
            if after is not None:
                conditions.append(after_position(order_by, after, descending))
            if before is not None:
                conditions.append(after_position(order_by, before, not descending))
            direction = DESCENDING if scan_descending else ASCENDING
            cursor = (
                self._db.sessions.find({"$and": conditions}, fields(windows))
                .sort([(order_by, direction), ("_id", direction)])
                .limit(limit + 1)
            )
            docs = await to_list(cursor)
        more = len(docs) > limit
        docs = docs[:limit]
        if backward:
            docs.reverse()
        codec = self._codec(windows)
        items = [session_from_document(doc, now, windows=codec) for doc in docs]
        if backward:
            return Page(items, has_next=before is not None, has_previous=more)
        return Page(items, has_next=more, has_previous=after is not None)

    async def _scan(
        self,
        base: dict[str, Any],
        order_by: SessionOrderField,
        descending: bool,
        start: SessionPosition | None,
        wanted: int,
        now: datetime,
        projection: dict[str, Any],
    ) -> Documents:
        """Up to `wanted` documents matching `base` beyond `start` in (order_by, _id) order,
        in queries a "simple" planner serves from an index (see docs/performance.md).

        The keyset's `$or` becomes two queries: the ties at `start`'s time, then the times
        strictly beyond it. Unfiltered or filtered by status alone (`windowed`; a status holds
        much of an organization), the times beyond are read in windows that grow
        from `start` (or now) until the page is full, sized by the density of the windows
        read before (`next_span`), because that planner reads every
        document of an index range before it sorts and limits: a window holding the page
        costs what the page costs, where the whole organization would cost its size.
        """
        direction = DESCENDING if descending else ASCENDING
        sort = [(order_by, direction), ("_id", direction)]
        past = "$lt" if descending else "$gt"

        async def page(match: dict[str, Any], n: int, beyond: str | None = None) -> Documents:
            """Up to `n` documents matching `match` (and, given `beyond`, ids past it), one
            index-served query (or two, ids first) per branch of its `$or`."""
            branches = disjoint_branches(match) or [match]
            docs: Documents = []
            for branch in branches:
                if beyond is not None:
                    branch = await self._beyond(branch, beyond, descending)
                served = await self._served(branch)
                if served.get("_id") == {"$in": []}:
                    continue  # its ids-first read found none: nothing to ask for
                cursor = self._db.sessions.find(served, projection).sort(sort).limit(n)
                docs += await to_list(cursor)
            if len(branches) > 1:
                docs.sort(key=lambda doc: (doc[order_by], doc["_id"]), reverse=descending)
            return docs[:n]

        found: Documents = []
        if start is not None:
            found = await page({**base, order_by: start.at}, wanted, beyond=start.id)
        edge = None if start is None else start.at
        if not windowed(base) or (edge is None and not descending):
            # Filtered by more than a status, or oldest first from the very start: one query
            # over the range.
            rest: dict[str, Any] = {}
            if edge is not None:
                rest[order_by] = descending_key_bounds({past: edge})
            if len(found) < wanted:
                found += await page({**base, **rest}, wanted - len(found))
            return found
        span = FIRST_WINDOW
        windows = 0
        measured, measured_found = timedelta(0), 0
        while len(found) < wanted:
            if (
                span > LAST_WINDOW
                or windows == WINDOWS_MAX
                or (not descending and edge is not None and edge > now)
            ):
                bound = {} if edge is None else descending_key_bounds({past: edge})
                return found + await page({**base, order_by: bound}, wanted - len(found))
            if descending:
                far = (edge or now) - span
                window = {"$gte": far} if edge is None else {"$lt": edge, "$gte": far}
            else:
                assert edge is not None
                far = edge + span
                window = {"$gt": edge, "$lte": far}
            window = descending_key_bounds(window)
            got = await page({**base, order_by: window}, wanted - len(found))
            found += got
            windows += 1
            if edge is not None:
                # Bounded on both sides: its density is the organization's there.
                measured, measured_found = measured + span, measured_found + len(got)
            edge = far
            span = next_span(span, len(got), measured, measured_found, wanted - len(found))
        return found

    async def _beyond(self, match: dict[str, Any], beyond: str, descending: bool) -> dict[str, Any]:
        """`match` (one time: the ties at a cursor) narrowed to the ids past `beyond` in
        `descending` order, in a shape a "simple" planner serves from an index: an `_id`
        range when `match` is served as it stands, else the candidates' ids past it."""
        candidates = await self._candidates(match)
        if candidates is None:
            return {**match, "_id": {"$lt" if descending else "$gt": beyond}}
        later = [i for i in candidates if (i < beyond if descending else i > beyond)]
        return {"_id": {"$in": later}, **match}

    async def _candidates(self, match: dict[str, Any]) -> SessionIds | None:
        """On a "simple" planner, when it would read the whole organization for `match`
        (a filter it cannot serve from one index as it stands), the ids of the sessions a
        part of `match` that it can serve selects: a superset of the matches, read first.
        None when `match` is served as it stands, or no part of it narrows the organization.
        """
        if self._db.planner != "simple" or "_id" in match or "$or" in match:
            return None
        if served_as_it_stands(match):
            return None
        part = served_part(match)
        if list(part) == ["org_id"]:
            return None
        cursor = self._db.sessions.find(part, {"_id": 1})
        return [doc["_id"] for doc in await to_list(cursor)]

    async def _served(self, match: dict[str, Any]) -> dict[str, Any]:
        """`match`, shaped so that a "simple" planner serves it from an index: the ids first
        (which it looks up one by one), narrowed by `_candidates` when that helps."""
        if self._db.planner != "simple":
            return match
        if "_id" in match:
            ids = match["_id"]
            if isinstance(ids, str) or list(ids) == ["$in"]:
                return {"_id": ids, **match}
            return match
        candidates = await self._candidates(match)
        return match if candidates is None else {"_id": {"$in": candidates}, **match}

    async def count(self, org_id: str, query: SessionQuery) -> int:
        """How many sessions match `query`: the organization's counter when `query` filters
        nothing or a status alone and counters are kept (storage/session_counts.py), else
        counted by query."""
        now = utc_now()
        match = query_filter(org_id, query, now)
        if list(match) == ["org_id"] and self._counter.kept:
            return await self._counter.total(org_id)
        if self._counter.kept and query.status is not None and windowed(match):
            kept = await self._counter.by_status(org_id, query.status, now)
            if kept is not None:
                return kept
        branches = [match]
        if self._db.planner == "simple":
            branches = disjoint_branches(match) or branches
        pipelines = [
            # `$count`, not count_documents' `$group` with `$sum`: the same on MongoDB, and
            # half the time on the embedded database, which evaluates `$sum` per document.
            [{"$match": await self._served(branch)}, {"$count": "n"}]
            for branch in branches
        ]

        async def counted(session: Any) -> int:
            total = 0
            for pipeline in pipelines:
                found = await to_list(self._db.sessions.aggregate(pipeline, session=session))
                total += int(found[0]["n"]) if found else 0
            return total

        if len(pipelines) == 1:
            return await counted(None)
        # Branches counted one after another could miss a session that moves between them
        # (the expiry sweep completing one between the "completed" and "active but expired"
        # counts): one transaction reads them all at one snapshot.
        return await self._db.in_transaction(counted)

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
        mine = {"_id": session_id, "org_id": org_id}
        # A stored status that may change moves the organization's completed count, in the
        # write's transaction (storage/session_counts.py).
        recount = "status" in fields and self._counter.kept

        async def write(session: Any) -> dict[str, Any] | None:
            before = None
            if recount:
                before = await self._db.sessions.find_one(mine, {"status": 1}, session=session)
                if before is None:
                    return None
            doc = await updated(self._db.sessions, mine, update, SESSION_FIELDS, session)
            if before is not None and doc is not None and before["status"] != doc["status"]:
                moved = 1 if doc["status"] == "completed" else -1
                await self._counter.add(org_id, 0, session, completed=moved)
            return doc

        # The embedded database serves the transaction's update and read from the index, where
        # its findAndModify scans the collection (see `updated`); MongoDB needs one only to
        # move a count.
        if recount or (self._db.planner == "simple" and self._db.supports_transactions):
            doc = await self._db.in_transaction(write)
        else:
            doc = await write(None)
        if doc is None:
            raise SessionNotFound(session_id)
        record = session_from_document(doc, now)
        if self._publish is not None:
            self._publish(SessionChanged(session_id, record))
        return record

    async def _take(self, org_id: str, session_id: str, session: Any) -> dict[str, Any] | None:
        """Delete the session's document; the document as it was, or None when the session
        does not exist in this organization."""
        mine = {"_id": session_id, "org_id": org_id}
        if self._db.planner == "simple" and session is not None:
            # That planner runs findAndModify's write as a collection scan (it re-asserts the
            # query under `$and`, which no index serves: ~130 ms at 10,000 sessions), but
            # serves a find and a delete by `_id` from the index. In a transaction the two
            # are as atomic as one: a concurrent writer of the document conflicts and retries.
            doc: dict[str, Any] | None = await self._db.sessions.find_one(
                mine, SESSION_FIELDS, session=session
            )
            if doc is None:
                return None
            deleted = await self._db.sessions.delete_one(mine, session=session)
            return doc if deleted.deleted_count == 1 else None
        found: dict[str, Any] | None = await self._db.sessions.find_one_and_delete(
            mine, projection=SESSION_FIELDS, session=session
        )
        return found

    async def delete(self, org_id: str, session_id: str) -> SessionRecord:
        """Remove the session and its messages together; return the session as it was."""

        async def remove(session: Any) -> dict[str, Any]:
            doc = await self._take(org_id, session_id, session)
            if doc is None:
                raise SessionNotFound(session_id)
            await self._counter.add(
                org_id, -1, session, completed=-int(doc["status"] == "completed")
            )
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
