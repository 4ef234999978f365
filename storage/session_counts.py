"""Each organization's number of sessions, kept in the transactions that create and delete
them, so that an organization's unfiltered `totalCount` is one document read.

A counter document is `{_id: org_id, n, exact}`. Every create adds 1 to it and every delete
takes 1 away, in the transaction that writes the session, upserting it when it is missing.
`n` is the organization's count only once `exact` is set: an organization with sessions
stored before counting began (an upgrade, a bulk load) has no counter, or one holding only
the changes since, until its first count. That first count (`SessionCounter.total`) counts
the sessions and sets `n` in one transaction, so it reads them at the snapshot the counter
is written against. A create or delete that commits after that snapshot has written the
counter too, and the database refuses the second of two transactions writing one document
(a write conflict, retried by `Database.in_transaction`): the retry then sees that change
in both the count and the counter, so nothing is counted twice or missed, however many
processes count at once.

Only deployments with transactions keep counters; without them (a standalone MongoDB) a
total is counted by query, as a filtered count always is.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import PyMongoError

from storage.database import TRANSIENT_TRANSACTION_ERROR, Database, to_list


class SessionCounter:
    """Reads and writes the `session_counts` collection: one counter per organization."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def kept(self) -> bool:
        """Whether counters are kept: only where creates and deletes run in transactions."""
        return self._db.supports_transactions

    async def add(self, org_id: str, delta: int, session: Any) -> None:
        """Add `delta` to the organization's counter, in the transaction (`session`) that
        creates (+1) or deletes (-1) a session; nothing without one."""
        if session is None:
            return
        await self._db.session_counts.update_one(
            {"_id": org_id}, {"$inc": {"n": delta}}, upsert=True, session=session
        )

    async def total(self, org_id: str) -> int:
        """How many sessions the organization has: its counter, counted first if need be."""
        doc = await self._db.session_counts.find_one({"_id": org_id})
        if doc is not None and doc.get("exact"):
            return int(doc["n"])
        try:
            return await self._db.in_transaction(lambda session: self._start(org_id, session))
        except PyMongoError as error:
            if not error.has_error_label(TRANSIENT_TRANSACTION_ERROR):
                raise
            # Creates kept conflicting with the first count until the retries ran out:
            # answer by query this time; a later read starts the counter.
            return await count_by_query(self._db, org_id, None)

    async def _start(self, org_id: str, session: Any) -> int:
        """Count the organization's sessions and make that its exact counter, in `session`'s
        transaction (see the module's docstring)."""
        doc = await self._db.session_counts.find_one({"_id": org_id}, session=session)
        if doc is not None and doc.get("exact"):
            return int(doc["n"])  # another process counted first
        n = await count_by_query(self._db, org_id, session)
        await self._db.session_counts.update_one(
            {"_id": org_id}, {"$set": {"n": n, "exact": True}}, upsert=True, session=session
        )
        return n


async def count_by_query(db: Database, org_id: str, session: Any) -> int:
    """How many sessions the organization has, counted one by one by the database."""
    # `$count`, not count_documents' `$group` with `$sum`: see `SessionStore.count`.
    pipeline = [{"$match": {"org_id": org_id}}, {"$count": "n"}]
    counted = await to_list(db.sessions.aggregate(pipeline, session=session))
    return int(counted[0]["n"]) if counted else 0
