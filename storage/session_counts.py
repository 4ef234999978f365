"""Each organization's number of sessions, and of sessions stored as completed, kept in the
transactions that create, complete, reopen and delete them, so that an organization's
unfiltered `totalCount`, and its `totalCount` by status, are one small read.

An organization's counter is `SLOTS` documents `{_id: "<org_id>/<slot>", org_id, n, exact,
completed, completed_exact}`, summed on read: every create adds 1 to `n` (and to `completed`
when it stores a completed session), every delete takes the same away, and every change of a
stored status (`updateSession`, the expiry sweep) moves 1 in or out of `completed`, on a slot
chosen at random, in the transaction that writes the session, upserting it when it is
missing. A status's count adds to the stored ones the sessions stored as active but past
their expiry (they read as completed), counted by an index-served query in the same
transaction as the slots are read: the sweep moves a session from that range to `completed`
in one transaction, so a count sees it on one side exactly. Two
transactions writing one document conflict (the database refuses the second, and
`Database.in_transaction` retries it), so one document would make every create of an
organization wait for the one before; with the slots, concurrent creates rarely meet.

The sum is the organization's count only once every slot is `exact` (`completed_exact` for
`completed`, which came later than `n`): an organization with
sessions stored before counting began (an upgrade, a bulk load) has no slots, or some
holding only the changes since, until its first count. That first count
(`SessionCounter.total`, `SessionCounter.by_status`) counts the sessions and writes every
slot (the counts in one, 0 in the others) in one transaction, so it reads the sessions at
the snapshot the slots are
written against. A create or delete that commits after that snapshot has written a slot
too, and one of the two transactions is refused and retried: the retry sees that change in
both the count and the slots, so nothing is counted twice or missed, however many processes
count at once.

Only deployments with transactions keep counters; without them (a standalone MongoDB) a
total is counted by query, as a count filtered by more than a status always is.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, NamedTuple

from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from storage.database import TRANSIENT_TRANSACTION_ERROR, Database, to_list
from storage.records import SessionStatusValue
from storage.session_filters import expired

SLOTS = 16
"""Documents per organization's counter: how far apart concurrent creates write."""


class SlotSums(NamedTuple):
    """An organization's counter, summed: its sessions, and those stored as completed (None
    until that part is exact)."""

    total: int
    completed: int | None


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

    async def add(self, org_id: str, delta: int, session: Any, *, completed: int = 0) -> None:
        """Add `delta` sessions, `completed` of them stored as completed, to one slot of the
        organization's counter, in the transaction (`session`) that creates (+1) or deletes
        (-1) them or changes their stored status (0, ±1); nothing without one."""
        if session is None or (delta == 0 and completed == 0):
            return
        slot = f"{org_id}/{random.randrange(SLOTS)}"
        change = {"n": delta, "completed": completed}
        await self._db.session_counts.update_one(
            {"_id": slot, "org_id": org_id}, {"$inc": change}, upsert=True, session=session
        )

    async def total(self, org_id: str) -> int:
        """How many sessions the organization has: its counter, counted first if need be."""
        counts = await self._sums(org_id, None)
        if counts is not None:
            return counts.total
        try:
            started = await self._db.in_transaction(lambda session: self._start(org_id, session))
            return started.total
        except PyMongoError as error:
            if not error.has_error_label(TRANSIENT_TRANSACTION_ERROR):
                raise
            # Creates kept conflicting with the first count until the retries ran out:
            # answer by query this time; a later read starts the counter.
            return await count_by_query(self._db, org_id, None)

    async def by_status(self, org_id: str, status: SessionStatusValue, now: datetime) -> int | None:
        """How many of the organization's sessions read as `status` at `now`: its counter
        (counted first if need be) and the sessions stored as active but past their expiry,
        read at one snapshot. None when conflicting writes kept the first count from
        finishing: count by query this time."""

        async def read(session: Any) -> int:
            counts = await self._sums(org_id, session)
            if counts is None or counts.completed is None:
                counts = await self._start(org_id, session)
            assert counts.completed is not None
            past_expiry = {"org_id": org_id, **expired(now)}
            unswept = await count_matching(self._db, past_expiry, session)
            if status == "completed":
                return counts.completed + unswept
            return counts.total - counts.completed - unswept

        try:
            return await self._db.in_transaction(read)
        except PyMongoError as error:
            if not error.has_error_label(TRANSIENT_TRANSACTION_ERROR):
                raise
            return None  # as in `total`

    async def _sums(self, org_id: str, session: Any) -> SlotSums | None:
        """The sums of the organization's slots, or None unless every one's `n` is exact
        (`completed` None unless every one's is too)."""
        cursor = self._db.session_counts.find(
            {"_id": {"$in": slot_ids(org_id)}, "org_id": org_id}, session=session
        )
        slots = await to_list(cursor)
        if len(slots) < SLOTS or not all(slot.get("exact") for slot in slots):
            return None
        total = sum(int(slot["n"]) for slot in slots)
        if not all(slot.get("completed_exact") for slot in slots):
            return SlotSums(total, None)
        return SlotSums(total, sum(int(slot.get("completed", 0)) for slot in slots))

    async def _start(self, org_id: str, session: Any) -> SlotSums:
        """Count the organization's sessions, and those stored as completed, and make that
        its exact counter, in `session`'s transaction (see the module's docstring)."""
        counts = await self._sums(org_id, session)
        if counts is not None and counts.completed is not None:
            return counts  # another process counted first
        n = await count_by_query(self._db, org_id, session)
        completed = await count_matching(
            self._db, {"org_id": org_id, "status": "completed"}, session
        )
        writes = [
            UpdateOne(
                {"_id": slot, "org_id": org_id},
                {
                    "$set": {
                        "n": n if index == 0 else 0,
                        "completed": completed if index == 0 else 0,
                        "exact": True,
                        "completed_exact": True,
                    }
                },
                upsert=True,
            )
            for index, slot in enumerate(slot_ids(org_id))
        ]
        await self._db.session_counts.bulk_write(writes, session=session)
        return SlotSums(n, completed)


async def count_by_query(db: Database, org_id: str, session: Any) -> int:
    """How many sessions the organization has, counted one by one by the database."""
    return await count_matching(db, {"org_id": org_id}, session)


async def count_matching(db: Database, match: dict[str, Any], session: Any) -> int:
    """How many sessions match `match` (flat: a filter the embedded database serves from
    an index), counted one by one by the database."""
    # `$count`, not count_documents' `$group` with `$sum`: see `SessionStore.count`.
    pipeline = [{"$match": match}, {"$count": "n"}]
    counted = await to_list(db.sessions.aggregate(pipeline, session=session))
    return int(counted[0]["n"]) if counted else 0
