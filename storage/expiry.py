"""The expiry sweep: a session past its expiry is marked completed, so its expiry is a
change the session event log records."""

from __future__ import annotations

import asyncio
import logging

from pymongo.errors import PyMongoError

from storage.clock import utc_now
from storage.database import Database
from storage.session_events import stop_if_cancelled

log = logging.getLogger(__name__)


class ExpirySweeper:
    """Marks sessions whose expiry has passed as completed, so that the expiry is a logged
    change. Every process sweeps; the conditional update lets exactly one mark each session.

    The mark changes no reading: a session past `expires_at` already reads as completed, and
    an update that moves the expiry of a session so marked reopens it as before
    (`completed_by_expiry`, which `SessionStore.update` clears)."""

    def __init__(self, db: Database, every_seconds: float) -> None:
        self._db = db
        self.every_seconds = every_seconds

    async def sweep(self) -> int:
        """Mark what has expired by now; how many sessions this call marked."""
        result = await self._db.sessions.update_many(
            {"status": "active", "expires_at": {"$lte": utc_now()}},
            {"$set": {"status": "completed", "completed_by_expiry": True}},
        )
        return int(result.modified_count)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except PyMongoError as error:
                stop_if_cancelled()
                log.warning("expiry sweep failed (%s); trying again", error)
            await asyncio.sleep(self.every_seconds)
