"""An organization's counts by status (storage/session_counts.py) equal a count by query:
after any sequence of creates, status changes, expiries, sweeps and deletes, under concurrent
writes, after aborted transactions, while the expiry sweep runs, and when the counter was
kept by a version that counted only the total."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import OperationFailure

from storage import Database, SessionQuery, SessionStore
from storage.database import to_list
from storage.expiry import ExpirySweeper
from storage.records import SessionStatusValue
from storage.session_counts import slot_ids
from tests.factories import session_record
from tests.faults import failing, failpoint_database

STATUSES: tuple[SessionStatusValue, ...] = ("active", "completed")
CONCURRENT = 40
# A code that is not transient: the transaction is aborted and not retried.
ILLEGAL_OPERATION = 20
SEQUENCES = 25
PAST = 0
"""An expiration of 0 seconds: the session is past its expiry from the moment it is made."""

Step = tuple[Literal["create", "status", "expire", "extend", "sweep", "delete"], int, str]


@pytest.fixture
def org_id() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


async def counts_by_query(db: Database, org_id: str) -> dict[str, int]:
    """Each status's count as the database counts it, without any counter."""
    plain = SessionStore(Database(db.client, db.db.name, supports_transactions=False))
    return {status: await plain.count(org_id, SessionQuery(status=status)) for status in STATUSES}


async def counts_by_counter(db: Database, org_id: str) -> dict[str, int]:
    """Each status's count as `SessionStore.count` answers it, from the counter."""
    store = SessionStore(db)
    return {status: await store.count(org_id, SessionQuery(status=status)) for status in STATUSES}


async def assert_exact(db: Database, org_id: str) -> dict[str, int]:
    """The counter is kept, complete, and agrees with a count by query; returns the counts."""
    truth = await counts_by_query(db, org_id)
    assert await counts_by_counter(db, org_id) == truth
    slots = await to_list(db.session_counts.find({"org_id": org_id}))
    assert sorted(slot["_id"] for slot in slots) == sorted(slot_ids(org_id))
    assert all(slot["exact"] and slot["completed_exact"] for slot in slots), slots
    return truth


async def run_steps(db: Database, org_id: str, steps: list[Step]) -> None:
    """Apply `steps` through the store and the sweep, checking the counts after each."""
    store = SessionStore(db)
    ids: list[str] = []
    for action, pick, status in steps:
        target = ids[pick % len(ids)] if ids else None
        if action == "create" or target is None:
            expiration = PAST if pick % 3 == 0 else 3600
            session = session_record(status=status, expiration_seconds=expiration)
            ids.append((await store.create(org_id, session, []))[0]["id"])
        elif action == "status":
            await store.update(org_id, target, {"status": status})  # type: ignore[typeddict-item]
        elif action == "expire":
            await store.update(org_id, target, {"expiration_seconds": PAST})
        elif action == "extend":
            # Reopens it when only the sweep completed it.
            await store.update(org_id, target, {"expiration_seconds": 3600})
        elif action == "sweep":
            await ExpirySweeper(db, 1).sweep()
        else:
            await store.delete(org_id, target)
            ids.remove(target)
        await assert_exact(db, org_id)


STEP: st.SearchStrategy[Step] = st.tuples(
    st.sampled_from(["create", "status", "expire", "extend", "sweep", "delete"]),
    st.integers(min_value=0, max_value=50),
    st.sampled_from(STATUSES),
)


async def test_counts_by_status_equal_a_count_by_query_after_any_sequence_of_changes(
    mongo_uri: str, db_name: str, database: Database
) -> None:
    def check_sequences() -> None:
        @settings(
            max_examples=SEQUENCES,
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.lists(STEP, min_size=1, max_size=12))
        def sequence(steps: list[Step]) -> None:
            async def run() -> None:
                db = await Database.connect(mongo_uri, db_name)
                try:
                    await run_steps(db, f"org-{uuid.uuid4().hex[:10]}", steps)
                finally:
                    await db.close()

            asyncio.run(run())

        sequence()

    # Hypothesis drives the examples synchronously: each runs on an event loop of its own.
    await asyncio.to_thread(check_sequences)


async def test_concurrent_creates_status_changes_and_deletes_keep_the_counts_exact(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    created = await asyncio.gather(
        *(
            store.create(org_id, session_record(status=STATUSES[n % 2]), [])
            for n in range(CONCURRENT)
        )
    )
    assert await assert_exact(database, org_id) == {"active": 20, "completed": 20}
    ids = [session["id"] for session, _ in created]

    writes: list[Awaitable[Any]] = [
        *(store.update(org_id, i, {"status": "completed"}) for i in ids[:10]),
        *(store.update(org_id, i, {"status": "active"}) for i in ids[10:20]),
        *(store.update(org_id, i, {"expiration_seconds": PAST}) for i in ids[20:24]),
        *(store.delete(org_id, i) for i in ids[30:]),
        *(store.create(org_id, session_record(status="completed"), []) for _ in range(5)),
    ]
    await asyncio.gather(*writes)

    # ids[0:10] now completed, ids[10:20] active, ids[20:24] past their expiry (completed),
    # ids[24:30] alternating as created, ids[30:] gone, and 5 more completed.
    assert await assert_exact(database, org_id) == {"active": 10 + 3, "completed": 10 + 4 + 3 + 5}


async def test_the_sweep_racing_counts_never_changes_what_they_say(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    for n in range(30):
        expiration = PAST if n % 2 else 3600
        await store.create(org_id, session_record(expiration_seconds=expiration), [])
    before = await assert_exact(database, org_id)
    assert before == {"active": 15, "completed": 15}

    # The sweep stores 15 expired sessions as completed, which they already read as.
    results = await asyncio.gather(
        ExpirySweeper(database, 1).sweep(),
        *(counts_by_counter(database, org_id) for _ in range(10)),
    )

    marked, *counts = results
    assert isinstance(marked, int)
    assert marked >= 15  # and other tests' organizations' in this database
    assert all(counted == before for counted in counts), counts
    assert await database.sessions.count_documents({"org_id": org_id, "status": "active"}) == 15
    assert await assert_exact(database, org_id) == before


async def test_a_counter_kept_by_the_total_only_version_is_completed_on_its_first_status_count(
    database: Database, org_id: str
) -> None:
    store = SessionStore(database)
    for status in ("active", "completed", "completed"):
        await store.create(org_id, session_record(status=status), [])
    assert await store.count(org_id, SessionQuery()) == 3
    # What the version before stored: the total, exact, and no completed counts.
    await database.session_counts.update_many(
        {"org_id": org_id}, {"$unset": {"completed": "", "completed_exact": ""}}
    )

    assert await assert_exact(database, org_id) == {"active": 1, "completed": 2}
    await store.create(org_id, session_record(status="completed"), [])
    assert await assert_exact(database, org_id) == {"active": 1, "completed": 3}


async def test_aborted_status_changes_and_sweeps_leave_the_counts_as_they_were(
    db_name: str,
) -> None:
    async with failpoint_database(db_name) as (_, db, _):
        org_id = f"org-{uuid.uuid4().hex[:10]}"
        store = SessionStore(db)
        kept, _ = await store.create(org_id, session_record(), [])
        expired, _ = await store.create(org_id, session_record(expiration_seconds=PAST), [])
        before = await assert_exact(db, org_id)
        assert before == {"active": 1, "completed": 1}

        # The session's update passes, the counter's fails: the update goes with it.
        async with failing(db, "update", {"skip": 1, "times": 1}, errorCode=ILLEGAL_OPERATION):
            with pytest.raises(OperationFailure):
                await store.update(org_id, kept["id"], {"status": "completed"})
        record = await store.get(org_id, kept["id"])
        assert record is not None
        assert record["status"] == "active"
        # Likewise the sweep's mark of the expired session.
        async with failing(db, "update", {"skip": 1, "times": 1}, errorCode=ILLEGAL_OPERATION):
            with pytest.raises(OperationFailure):
                await ExpirySweeper(db, 1).sweep()
        stored = await db.sessions.find_one({"_id": expired["id"]})
        assert stored is not None
        assert stored["status"] == "active"

        assert await assert_exact(db, org_id) == before
        assert await ExpirySweeper(db, 1).sweep() == 1
        assert await assert_exact(db, org_id) == before
