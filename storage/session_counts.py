"""Each organization's number of sessions, kept in the transactions that create and delete
them, so that an organization's unfiltered `totalCount` is one small read.

An organization's counter is `SLOTS` documents `{_id: "<org_id>/<slot>", org_id, n, exact}`,
summed on read: every create adds 1 to, and every delete takes 1 from, a slot chosen at
random, in the transaction that writes the session, upserting it when it is missing. Two
transactions writing one document conflict (the database refuses the second, and
`Database.in_transaction` retries it), so one document would make every create of an
organization wait for the one before; with the slots, concurrent creates rarely meet.

The sum is the organization's count only once every slot is `exact`: an organization with
sessions stored before counting began (an upgrade, a bulk load) has no slots, or some
holding only the changes since, until its first count. That first count
(`SessionCounter.total`) counts the sessions and writes every slot (the count in one, 0 in
the others) in one transaction, so it reads the sessions at the snapshot the slots are
written against. A create or delete that commits after that snapshot has written a slot
too, and one of the two transactions is refused and retried: the retry sees that change in
both the count and the slots, so nothing is counted twice or missed, however many processes
count at once.

Only deployments with transactions keep counters; without them (a standalone MongoDB) a
total is counted by query, as a filtered count always is.
"""

from __future__ import annotations

import random
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from storage.database import TRANSIENT_TRANSACTION_ERROR, Database, to_list

SLOTS = 16
"""Documents per organization's counter: how far apart concurrent creates write."""


def slot_ids(org_id: str) -> list[str]:
    """The `_id`s of the organization's counter documents."""
    return [f"{org_id}/{slot}" for slot in range(SLOTS)]


class SessionCounter:
    """Reads and writes the `session_counts` collection: each organization's counter."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def kept(self) -> bool:
        """Whether counters are kept: only where creates and deletes run in transactions."""
        return self._db.supports_transactions

    async def add(self, org_id: str, delta: int, session: Any) -> None:
        """Add `delta` to one slot of the organization's counter, in the transaction
        (`session`) that creates (+1) or deletes (-1) a session; nothing without one."""
        if session is None:
            return
        slot = f"{org_id}/{random.randrange(SLOTS)}"
        await self._db.session_counts.update_one(
            {"_id": slot, "org_id": org_id}, {"$inc": {"n": delta}}, upsert=True, session=session
        )

    async def total(self, org_id: str) -> int:
        """How many sessions the organization has: its counter, counted first if need be."""
        n = await self._exact_sum(org_id, None)
        if n is not None:
            return n
        try:
            return await self._db.in_transaction(lambda session: self._start(org_id, session))
        except PyMongoError as error:
            if not error.has_error_label(TRANSIENT_TRANSACTION_ERROR):
                raise
            # Creates kept conflicting with the first count until the retries ran out:
            # answer by query this time; a later read starts the counter.
            return await count_by_query(self._db, org_id, None)

    async def _exact_sum(self, org_id: str, session: Any) -> int | None:
        """The sum of the organization's slots, or None unless every one is exact."""
        cursor = self._db.session_counts.find(
            {"_id": {"$in": slot_ids(org_id)}, "org_id": org_id}, session=session
        )
        slots = await to_list(cursor)
        if len(slots) < SLOTS or not all(slot.get("exact") for slot in slots):
            return None
        return sum(int(slot["n"]) for slot in slots)

    async def _start(self, org_id: str, session: Any) -> int:
        """Count the organization's sessions and make that its exact counter, in `session`'s
        transaction (see the module's docstring)."""
        n = await self._exact_sum(org_id, session)
        if n is not None:
            return n  # another process counted first
        n = await count_by_query(self._db, org_id, session)
        writes = [
            UpdateOne(
                {"_id": slot, "org_id": org_id},
                {"$set": {"n": n if index == 0 else 0, "exact": True}},
                upsert=True,
            )
            for index, slot in enumerate(slot_ids(org_id))
        ]
        await self._db.session_counts.bulk_write(writes, session=session)
        return n


async def count_by_query(db: Database, org_id: str, session: Any) -> int:
    """How many sessions the organization has, counted one by one by the database."""
    # `$count`, not count_documents' `$group` with `$sum`: see `SessionStore.count`.
    pipeline = [{"$match": {"org_id": org_id}}, {"$count": "n"}]
    counted = await to_list(db.sessions.aggregate(pipeline, session=session))
    return int(counted[0]["n"]) if counted else 0
