"""The expiry sweep: a session past its expiry is marked completed, so its expiry is a
change the session event log records."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from pymongo.errors import PyMongoError

from storage.clock import utc_now
from storage.database import Database, to_list
from storage.session_counts import SessionCounter
from storage.session_events import stop_if_cancelled
from storage.session_filters import expired

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
"""The most sessions one of the sweep's transactions marks."""
MARK = {"$set": {"status": "completed", "completed_by_expiry": True}}


class ExpirySweeper:
    """Marks sessions whose expiry has passed as completed, so that the expiry is a logged
    change. Every process sweeps; the conditional update lets exactly one mark each session.

    The mark changes no reading: a session past `expires_at` already reads as completed, and
    an update that moves the expiry of a session so marked reopens it as before
    (`completed_by_expiry`, which `SessionStore.update` clears). Where organizations'
    counters are kept (storage/session_counts.py), each batch is marked in a transaction that
    moves the marked sessions into their organization's completed count."""

    def __init__(self, db: Database, every_seconds: float) -> None:
        self._db = db
        self._counter = SessionCounter(db)
        self.every_seconds = every_seconds

    async def sweep(self) -> int:
        """Mark what has expired by now; how many sessions this call marked."""
        if not self._counter.kept:
            result = await self._db.sessions.update_many(expired(utc_now()), MARK)
            return int(result.modified_count)
        marked = 0
        while True:
            found, batch_marked = await self._db.in_transaction(self._mark_batch)
            marked += batch_marked
            if found < SWEEP_BATCH or batch_marked == 0:
                return marked

    async def _mark_batch(self, session: Any) -> tuple[int, int]:
        """Mark up to SWEEP_BATCH expired sessions and count them in, in `session`'s
        transaction; how many were found, and how many marked."""
        now = utc_now()
        cursor = self._db.sessions.find(expired(now), {"org_id": 1}, session=session)
        found = await to_list(cursor.limit(SWEEP_BATCH))
        by_org: dict[str, list[str]] = defaultdict(list)
        for doc in found:
            by_org[doc["org_id"]].append(doc["_id"])
        marked = 0
        for org_id, ids in by_org.items():
            # The ids first: the embedded database looks them up one by one, where it would
            # read the whole organization for a filter led by `org_id`.
            mine = {"_id": {"$in": ids}, "org_id": org_id, **expired(now)}
            result = await self._db.sessions.update_many(mine, MARK, session=session)
            await self._counter.add(org_id, 0, session, completed=result.modified_count)
            marked += result.modified_count
        return len(found), marked

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except PyMongoError as error:
                stop_if_cancelled()
                log.warning("expiry sweep failed (%s); trying again", error)
            await asyncio.sleep(self.every_seconds)
