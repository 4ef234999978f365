"""Each organization's session counter (storage/session_counts.py) stays exact: under
concurrent creates and deletes, after aborted transactions, when it is first counted from
sessions stored before it existed (while creates go on), and per organization."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from storage import Database, SessionNotFound, SessionQuery, SessionStore
from storage.database import to_list
from storage.scope import ScopedSessionStore
from storage.session_counts import SessionCounter, count_by_query, slot_ids
from tests.factories import message_record, session_record
from tests.faults import failing, failpoint_database

CONCURRENT = 40
PRE_EXISTING = 120
# A code that is not transient: the transaction is aborted and not retried.
ILLEGAL_OPERATION = 20
EVERYTHING = SessionQuery()


@pytest.fixture
def org_id() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


async def slots_of(db: Database, org_id: str) -> list[dict[str, Any]]:
    """The organization's counter documents, as stored."""
    return await to_list(db.session_counts.find({"org_id": org_id}))


async def assert_exact(db: Database, org_id: str) -> int:
    """The organization's counter is set and agrees with its sessions; returns the count."""
    truth = await count_by_query(db, org_id, None)
    assert await SessionStore(db).count(org_id, EVERYTHING) == truth
    slots = await slots_of(db, org_id)
    assert sorted(slot["_id"] for slot in slots) == sorted(slot_ids(org_id))
    assert all(slot["exact"] is True for slot in slots), slots
    assert sum(slot["n"] for slot in slots) == truth, (slots, truth)
    return truth


def stored_document(org_id: str) -> dict[str, Any]:
    """A session as a bulk load (or an older version) stored it: no counter touched."""
    now = datetime.now(UTC)
    return {
        "_id": str(uuid.uuid4()),
        "org_id": org_id,
        **session_record(name="pre-existing"),
        "expires_at": now,
        "created_at": now,
        "updated_at": now,
        "message_count": 0,
    }


async def test_an_organizations_total_is_read_from_its_counter(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    for _ in range(3):
        await store.create(org_id, session_record(name="counted"), [])

    assert await store.count(org_id, EVERYTHING) == 3
    # The counter, not a count: a counter changed by hand is what the total says.
    await database.session_counts.update_one({"_id": slot_ids(org_id)[0]}, {"$inc": {"n": 997}})
    assert await store.count(org_id, EVERYTHING) == 1000
    # So is a count by status alone (997 more stored, none of them completed)...
    assert await store.count(org_id, SessionQuery(status="active")) == 1000
    assert await store.count(org_id, SessionQuery(status="completed")) == 0
    # ...but any other filter still counts the sessions.
    assert await store.count(org_id, SessionQuery(name="counted")) == 3


async def test_concurrent_creates_and_deletes_keep_the_counter_exact(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    created = await asyncio.gather(
        *(store.create(org_id, session_record(), [message_record("hi")]) for _ in range(CONCURRENT))
    )
    assert await assert_exact(database, org_id) == CONCURRENT

    doomed = [session["id"] for session, _ in created[: CONCURRENT // 2]]
    await asyncio.gather(
        *(store.delete(org_id, session_id) for session_id in doomed),
        *(store.create(org_id, session_record(), []) for _ in range(CONCURRENT // 4)),
    )

    assert await assert_exact(database, org_id) == CONCURRENT - CONCURRENT // 2 + CONCURRENT // 4


async def test_the_first_count_of_pre_existing_sessions_is_exact_while_creates_go_on(
    database: Database, org_id: str
) -> None:
    await database.sessions.insert_many([stored_document(org_id) for _ in range(PRE_EXISTING)])
    assert await slots_of(database, org_id) == []
    store = SessionStore(database)
    # Two "processes" (stores of their own) counting for the first time, among creates.
    counters = [SessionCounter(database), SessionCounter(database)]

    results = await asyncio.gather(
        *(counter.total(org_id) for counter in counters for _ in range(3)),
        *(store.create(org_id, session_record(), []) for _ in range(CONCURRENT)),
    )

    totals = [result for result in results if isinstance(result, int)]
    assert all(PRE_EXISTING <= total <= PRE_EXISTING + CONCURRENT for total in totals), totals
    assert await assert_exact(database, org_id) == PRE_EXISTING + CONCURRENT
    await store.create(org_id, session_record(), [])
    assert await assert_exact(database, org_id) == PRE_EXISTING + CONCURRENT + 1


async def test_changes_before_the_first_count_are_not_counted_twice(
    database: Database, org_id: str
) -> None:
    await database.sessions.insert_many([stored_document(org_id) for _ in range(5)])
    store = SessionStore(database)
    await store.create(org_id, session_record(), [])
    doomed, _ = await store.create(org_id, session_record(), [])
    await store.delete(org_id, doomed["id"])
    # The counter holds only the changes since counting began (+1 +1 -1): not yet exact.
    slots = await slots_of(database, org_id)
    assert sum(slot["n"] for slot in slots) == 1
    assert not any(slot.get("exact") for slot in slots)

    assert await assert_exact(database, org_id) == 6


async def test_organizations_are_counted_apart(database: Database) -> None:
    store = SessionStore(database)
    one, two = f"org-{uuid.uuid4().hex[:10]}", f"org-{uuid.uuid4().hex[:10]}"
    await asyncio.gather(
        *(store.create(one, session_record(), []) for _ in range(7)),
        *(store.create(two, session_record(), []) for _ in range(3)),
    )
    victim, _ = await store.create(two, session_record(), [])
    await store.delete(two, victim["id"])

    assert await assert_exact(database, one) == 7
    assert await assert_exact(database, two) == 3
    # Deleting another organization's session changes nothing.
    with pytest.raises(SessionNotFound):
        await store.delete(one, (await store.list(two, EVERYTHING, first=1)).items[0]["id"])
    assert await assert_exact(database, one) == 7
    assert await assert_exact(database, two) == 3


async def test_a_session_scoped_caller_counts_only_its_sessions(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    mine = [(await store.create(org_id, session_record(), []))[0]["id"] for _ in range(2)]
    await store.create(org_id, session_record(), [])

    scoped = ScopedSessionStore(store, frozenset(mine))

    assert await scoped.count(org_id, EVERYTHING) == 2
    assert await store.count(org_id, EVERYTHING) == 3


async def test_without_transactions_no_counter_is_kept_and_totals_are_counted(
    database: Database, org_id: str
) -> None:
    plain = Database(database.client, database.db.name, supports_transactions=False)
    store = SessionStore(plain)
    created, _ = await store.create(org_id, session_record(), [message_record("a")])
    await store.create(org_id, session_record(), [])
    await store.delete(org_id, created["id"])

    assert await store.count(org_id, EVERYTHING) == 1
    assert await slots_of(database, org_id) == []


async def test_aborted_creates_and_deletes_leave_the_counter_as_it_was(db_name: str) -> None:
    async with failpoint_database(db_name) as (_, db, _):
        org_id = f"org-{uuid.uuid4().hex[:10]}"
        store = SessionStore(db)
        kept, _ = await store.create(org_id, session_record(), [message_record("a")])
        assert await assert_exact(db, org_id) == 1

        # The counter's own write fails: the create's session and messages go with it.
        async with failing(db, "update", "alwaysOn", errorCode=ILLEGAL_OPERATION):
            with pytest.raises(OperationFailure):
                await store.create(org_id, session_record(name="aborted"), [message_record("b")])
        # A delete command of the delete's transaction fails (on the embedded database the
        # session's own delete, before the counter's write; on MongoDB, where the session
        # goes by findAndModify, the messages' delete, after it): nothing of it stays.
        async with failing(db, "delete", "alwaysOn", errorCode=ILLEGAL_OPERATION):
            with pytest.raises(OperationFailure):
                await store.delete(org_id, kept["id"])

        assert await db.sessions.count_documents({"name": "aborted"}) == 0
        assert await store.get(org_id, kept["id"]) is not None
        assert await assert_exact(db, org_id) == 1
