"""The org-wide session event log: every create, update, completion and delete, in commit order.

Every server process turns the sessions changes its change stream sees into log entries. An
entry's `_id` is its position in commit order (the change's cluster time, then its index among
the changes of that cluster time, then the session id), written as fixed-width hex so that
string order is commit order; concurrent writers of one change collapse to one entry. The
position is also the client's cursor. Each process checkpoints how far it has logged, and a
process that starts resumes its change stream from the shared checkpoint, so writes committed
while no process was logging are logged too. Entries expire after the retention period; a
cursor whose entry has expired, or that lies before a gap the log could not fill, is refused
rather than answered with a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from storage.clock import utc_now
from storage.database import Database, to_list
from storage.errors import CursorExpired

log = logging.getLogger(__name__)

SessionEventTypeValue = Literal["CREATED", "UPDATED", "COMPLETED", "DELETED"]

DEFAULT_RETENTION_SECONDS = 24 * 3600
CHECKPOINT_ID = "session_events"
HORIZON_ID = "session_events_horizon"
CHECKPOINT_EVERY_SECONDS = 1.0
CURSOR_PATTERN = re.compile(r"^[0-9a-f]{20}-[A-Za-z0-9_.:-]{1,200}$")
INDEX_CONFLICT_CODES = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class SessionEventRecord:
    """One logged change of a session: where it sits in commit order and what it was."""

    cursor: str
    type: SessionEventTypeValue
    session_id: str
    org_id: str
    at: datetime


@dataclass(slots=True)
class LogPosition:
    """Where a change stream stands: its resume token and the last change's position."""

    token: Any
    time: int
    inc: int
    index: int

    @property
    def key(self) -> str:
        return f"{self.time:08x}{self.inc:08x}{self.index:04x}"


def stop_if_cancelled() -> None:
    """Raise CancelledError when the current task is being cancelled.

    On Python 3.11 a driver call waiting through `asyncio.wait_for` (PyMongo's server
    selection does, when the database is unreachable) can swallow the task's cancellation
    and raise its own error instead; a loop that retries on that error must stop here, or
    it never ends."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def is_cursor(value: str) -> bool:
    """Whether `value` has the shape of a cursor this server hands out."""
    return CURSOR_PATTERN.match(value) is not None


def next_position(previous: LogPosition | None, change: dict[str, Any]) -> LogPosition:
    """The position of `change`, which the stream delivered right after `previous`."""
    cluster_time = change["clusterTime"]
    index = 0
    if (
        previous is not None
        and previous.time == cluster_time.time
        and previous.inc == cluster_time.inc
    ):
        index = previous.index + 1
    return LogPosition(change["_id"], cluster_time.time, cluster_time.inc, index)


def event_type_of(change: dict[str, Any]) -> SessionEventTypeValue | None:
    """The event a sessions or deleted-sessions change stands for, if any."""
    collection = change["ns"]["coll"]
    operation = change["operationType"]
    if collection == "deleted_sessions":
        return "DELETED" if operation == "insert" else None
    if collection != "sessions":
        return None
    if operation == "insert":
        return "CREATED"
    if operation == "update":
        updated = change.get("updateDescription", {}).get("updatedFields", {})
        return "COMPLETED" if updated.get("status") == "completed" else "UPDATED"
    if operation == "replace":
        return "UPDATED"
    return None  # a delete: the deleted-sessions insert of its transaction carries the org


class SessionEventLog:
    """The `session_events` collection, and the checkpoints of the processes writing it."""

    def __init__(self, db: Database, retention_seconds: int = DEFAULT_RETENTION_SECONDS) -> None:
        self._db = db
        self.retention_seconds = retention_seconds
        self._events = db.db["session_events"]
        self._checkpoints = db.db["change_stream_checkpoints"]

    async def ensure_indexes(self) -> None:
        """The replay index, and the expiry of entries (changed in place when the setting is)."""
        await self._events.create_indexes([IndexModel([("org_id", ASCENDING), ("_id", ASCENDING)])])
        ttl = IndexModel([("logged_at", ASCENDING)], expireAfterSeconds=self.retention_seconds)
        try:
            await self._events.create_indexes([ttl])
        except OperationFailure as error:
            if error.code not in INDEX_CONFLICT_CODES:
                raise
            index = {"keyPattern": {"logged_at": 1}, "expireAfterSeconds": self.retention_seconds}
            await self._db.db.command("collMod", "session_events", index=index)

    async def record(
        self, change: dict[str, Any], position: LogPosition
    ) -> SessionEventRecord | None:
        """Log `change` at `position` (once, however many processes log it); its event."""
        event = await self.event_of(change, position)
        if event is not None:
            await self.write([event])
        return event

    async def event_of(
        self, change: dict[str, Any], position: LogPosition
    ) -> SessionEventRecord | None:
        """The event `change`, seen at `position`, stands for, if any."""
        kind = event_type_of(change)
        if kind is None:
            return None
        session_id: str = change["documentKey"]["_id"]
        doc = change.get("fullDocument")
        if doc is None:
            # Updated, then deleted before the change stream looked the session up: its
            # deletion left the organization behind.
            doc = await self._db.deleted_sessions.find_one({"_id": session_id})
            if doc is None:
                log.warning("session %s changed and vanished without a trace", session_id)
                return None
        org_id: str = doc["org_id"]
        wall = change.get("wallTime")
        at = wall if isinstance(wall, datetime) else datetime.fromtimestamp(position.time, UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return SessionEventRecord(f"{position.key}-{session_id}", kind, session_id, org_id, at)

    async def write(self, events: list[SessionEventRecord]) -> None:
        """Insert `events`; those another process logged already are left as they are."""
        now = utc_now()
        entries = [
            {
                "_id": event.cursor,
                "org_id": event.org_id,
                "session_id": event.session_id,
                "type": event.type,
                "at": event.at,
                "logged_at": now,
            }
            for event in events
        ]
        try:
            await self._events.insert_many(entries, ordered=False)
        except BulkWriteError as error:
            details = error.details
            duplicates = all(e["code"] == DUPLICATE_KEY for e in details.get("writeErrors", []))
            if not duplicates or details.get("writeConcernErrors"):
                raise

    async def after(
        self,
        org_id: str,
        cursor: str,
        limit: int,
        *,
        inclusive: bool = False,
        session_ids: Collection[str] | None = None,
    ) -> tuple[list[SessionEventRecord], bool]:
        """Up to `limit` of the organization's entries after `cursor`, in commit order, and
        whether more may follow. `session_ids`, when given, keeps only those sessions'.

        The scope is applied here, not in the filter, so that the (org_id, _id) index alone
        answers the query (SecantusDB scans for any filter field outside the index)."""
        bound = "$gte" if inclusive else "$gt"
        found = await to_list(
            self._events.find({"org_id": org_id, "_id": {bound: cursor}})
            .sort([("org_id", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        events = [
            SessionEventRecord(d["_id"], d["type"], d["session_id"], d["org_id"], d["at"])
            for d in found
            if session_ids is None or d["session_id"] in session_ids
        ]
        return events, len(found) == limit

    async def check_cursor(self, org_id: str, cursor: str) -> None:
        """Raise CursorExpired unless every entry after `cursor` is still in the log."""
        horizon = await self._checkpoints.find_one({"_id": HORIZON_ID})
        if horizon is not None and cursor[:20] <= horizon["position"]:
            raise CursorExpired(cursor, self.retention_seconds)
        if await self._events.find_one({"_id": cursor, "org_id": org_id}, {"_id": 1}) is None:
            raise CursorExpired(cursor, self.retention_seconds)

    async def checkpoint(self) -> LogPosition | None:
        """The furthest position up to which every change has been logged, if any."""
        doc = await self._checkpoints.find_one({"_id": CHECKPOINT_ID})
        if doc is None:
            return None
        time, inc, index = doc["at"]
        return LogPosition(doc["token"], time, inc, index)

    async def save_checkpoint(self, position: LogPosition) -> None:
        """Move the checkpoint forward to `position`; never back (another process may be ahead)."""
        with contextlib.suppress(DuplicateKeyError):
            await self._checkpoints.update_one(
                {"_id": CHECKPOINT_ID, "position": {"$lt": position.key}},
                {
                    "$set": {
                        "position": position.key,
                        "token": position.token,
                        "at": [position.time, position.inc, position.index],
                    }
                },
                upsert=True,
            )

    async def mark_gap(self, position: LogPosition) -> None:
        """Changes after `position` may be missing: refuse cursors up to it from now on."""
        with contextlib.suppress(DuplicateKeyError):
            await self._checkpoints.update_one(
                {"_id": HORIZON_ID, "position": {"$lt": position.key}},
                {"$set": {"position": position.key}},
                upsert=True,
            )
