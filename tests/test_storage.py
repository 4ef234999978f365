"""The storage layer used directly, with each supported driver (PyMongo and Motor)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from sessiongraph.settings import Settings
from storage import (
    ApiKeyStore,
    Database,
    IdempotencyKeyReused,
    MessageStore,
    SessionClosed,
    SessionNotFound,
    SessionPosition,
    SessionQuery,
    SessionRecord,
    SessionStore,
)
from tests.command_log import CommandRecorder
from tests.factories import message_record, session_record


@pytest.fixture(params=["pymongo", "motor"])
async def db(
    request: pytest.FixtureRequest, mongo_uri: str, settings: Settings, database: Database
) -> AsyncIterator[Database]:
    """A connection through one driver; `database` makes sure the indexes exist and the test
    database is dropped at the end of the run."""
    connection = await Database.connect(mongo_uri, settings.db_name, driver=request.param)
    yield connection
    await connection.close()


@pytest.fixture
def org_id() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def other_org_id() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


async def stored_session(
    db: Database, org_id: str, messages: int = 0, **changes: Any
) -> SessionRecord:
    record, _ = await SessionStore(db).create(
        org_id, session_record(**changes), [message_record(f"m{i}") for i in range(1, messages + 1)]
    )
    return record


def is_utc(value: datetime) -> bool:
    return value.utcoffset() == timedelta(0)


# Sessions ---------------------------------------------------------------------------------


async def test_created_session_reads_back_unchanged(db: Database, org_id: str) -> None:
    created, _ = await SessionStore(db).create(
        org_id, session_record(name="call", assistant_id="asst-1", customer={"number": "+1415"}), []
    )

    fetched = await SessionStore(db).get(org_id, created["id"])

    assert fetched == created
    assert (created["name"], created["assistant_id"], created["message_count"]) == (
        "call",
        "asst-1",
        0,
    )
    assert created["expires_at"] - created["created_at"] == timedelta(hours=1)


async def test_create_stores_initial_messages_from_seq_one(db: Database, org_id: str) -> None:
    session, messages = await SessionStore(db).create(
        org_id, session_record(), [message_record("a"), message_record("b"), message_record("c")]
    )

    found = await MessageStore(db).in_ranges(org_id, [(session["id"], 1, 10)])

    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert found[session["id"]] == messages
    assert session["message_count"] == 3


async def test_phone_number_secrets_are_stored_but_never_read(db: Database, org_id: str) -> None:
    session = await stored_session(db, org_id, phone_number_secrets={"twilioAuthToken": "t0k"})

    raw = await db.sessions.find_one({"_id": session["id"]})
    fetched = await SessionStore(db).get(org_id, session["id"])

    assert raw is not None
    assert raw["phone_number_secrets"] == {"twilioAuthToken": "t0k"}
    assert fetched is not None
    assert "phone_number_secrets" not in fetched
    assert "phone_number_secrets" not in session


async def test_update_changes_fields_and_updated_at(db: Database, org_id: str) -> None:
    session = await stored_session(db, org_id, name="before")
    earlier = session["updated_at"] - timedelta(minutes=1)
    await db.sessions.update_one({"_id": session["id"]}, {"$set": {"updated_at": earlier}})

    updated = await SessionStore(db).update(
        org_id, session["id"], {"name": "after", "status": "completed", "expiration_seconds": 120}
    )

    assert (updated["name"], updated["status"]) == ("after", "completed")
    assert updated["expires_at"] == session["created_at"] + timedelta(seconds=120)
    assert updated["updated_at"] > earlier
    assert await SessionStore(db).get(org_id, session["id"]) == updated


async def test_update_of_a_missing_session_raises_session_not_found(
    db: Database, org_id: str
) -> None:
    with pytest.raises(SessionNotFound):
        await SessionStore(db).update(org_id, "missing", {"name": "x"})


async def test_delete_removes_the_session_its_messages_and_its_idempotency_keys(
    db: Database, org_id: str
) -> None:
    session = await stored_session(db, org_id, messages=2)
    await MessageStore(db).append(org_id, session["id"], [message_record("c")], idempotency_key="k")

    deleted = await SessionStore(db).delete(org_id, session["id"])

    assert deleted["id"] == session["id"]
    assert deleted["message_count"] == 3
    assert await SessionStore(db).get(org_id, session["id"]) is None
    assert await db.messages.count_documents({"session_id": session["id"]}) == 0
    assert await db.idempotency.count_documents({"session_id": session["id"]}) == 0


async def test_delete_of_a_missing_session_raises_session_not_found(
    db: Database, org_id: str
) -> None:
    with pytest.raises(SessionNotFound):
        await SessionStore(db).delete(org_id, "missing")


async def test_get_many_returns_the_existing_sessions_by_id(db: Database, org_id: str) -> None:
    one = await stored_session(db, org_id, name="one")
    two = await stored_session(db, org_id, name="two")
    await stored_session(db, org_id, name="three")

    found = await SessionStore(db).get_many(org_id, [one["id"], "missing", two["id"]])

    assert found == {one["id"]: one, two["id"]: two}


async def test_list_pages_forward_by_keyset_in_order(db: Database, org_id: str) -> None:
    store = SessionStore(db)
    ids = [(await stored_session(db, org_id))["id"] for _ in range(7)]
    # Pairs share a creation time, so the id decides between them.
    base = datetime(2025, 1, 1, tzinfo=UTC)
    times = {sid: base + timedelta(seconds=i // 2) for i, sid in enumerate(ids)}
    for sid, at in times.items():
        await db.sessions.update_one({"_id": sid}, {"$set": {"created_at": at}})
    expected = sorted(ids, key=lambda sid: (times[sid], sid), reverse=True)

    visited: list[str] = []
    after: SessionPosition | None = None
    has_next = True
    while has_next:
        page = await store.list(org_id, SessionQuery(), first=3, after=after)
        visited += [s["id"] for s in page.items]
        assert page.items, "an empty page before the end"
        last = page.items[-1]
        after = SessionPosition(last["created_at"], last["id"])
        has_next = page.has_next

    assert visited == expected


async def test_list_pages_backward_by_keyset_in_order(db: Database, org_id: str) -> None:
    store = SessionStore(db)
    ids = [(await stored_session(db, org_id))["id"] for _ in range(7)]
    base = datetime(2025, 1, 1, tzinfo=UTC)
    times = {sid: base + timedelta(seconds=i // 2) for i, sid in enumerate(ids)}
    for sid, at in times.items():
        await db.sessions.update_one({"_id": sid}, {"$set": {"updated_at": at}})
    expected = sorted(ids, key=lambda sid: (times[sid], sid))

    visited: list[str] = []
    before: SessionPosition | None = None
    has_previous = True
    while has_previous:
        page = await store.list(
            org_id, SessionQuery(), order_by="updated_at", descending=False, last=3, before=before
        )
        visited = [s["id"] for s in page.items] + visited
        assert page.items, "an empty page before the start"
        first = page.items[0]
        before = SessionPosition(first["updated_at"], first["id"])
        has_previous = page.has_previous

    assert visited == expected


async def test_count_applies_the_query(db: Database, org_id: str) -> None:
    for name in ("a", "a", "b"):
        await stored_session(db, org_id, name=name)

    store = SessionStore(db)

    assert await store.count(org_id, SessionQuery(name="a")) == 2
    assert await store.count(org_id, SessionQuery()) == 3


# Messages ---------------------------------------------------------------------------------


async def test_append_numbers_messages_after_the_existing_ones(db: Database, org_id: str) -> None:
    session = await stored_session(db, org_id, messages=2)

    added = await MessageStore(db).append(
        org_id, session["id"], [message_record("x"), message_record("y")]
    )

    assert [(m["seq"], m["content"]) for m in added] == [(3, "x"), (4, "y")]
    after = await SessionStore(db).get(org_id, session["id"])
    assert after is not None
    assert after["message_count"] == 4


async def test_append_with_a_used_key_returns_the_stored_messages(
    db: Database, org_id: str
) -> None:
    session = await stored_session(db, org_id)
    messages = MessageStore(db)

    first = await messages.append(
        org_id, session["id"], [message_record("x"), message_record("y")], "key-1"
    )
    retry = await messages.append(
        org_id, session["id"], [message_record("x"), message_record("y")], "key-1"
    )

    assert retry == first
    assert await db.messages.count_documents({"session_id": session["id"]}) == 2


async def test_append_with_a_used_key_and_other_messages_raises(db: Database, org_id: str) -> None:
    session = await stored_session(db, org_id)
    messages = MessageStore(db)
    await messages.append(org_id, session["id"], [message_record("x")], "key-1")

    with pytest.raises(IdempotencyKeyReused):
        await messages.append(org_id, session["id"], [message_record("other")], "key-1")


async def test_append_to_a_completed_session_raises_session_closed(
    db: Database, org_id: str
) -> None:
    session = await stored_session(db, org_id, status="completed")

    with pytest.raises(SessionClosed) as raised:
        await MessageStore(db).append(org_id, session["id"], [message_record("x")])

    assert raised.value.reason == "completed"
    assert await db.messages.count_documents({"session_id": session["id"]}) == 0


async def test_append_to_an_expired_session_raises_session_closed(
    db: Database, org_id: str
) -> None:
    session = await stored_session(db, org_id)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await db.sessions.update_one({"_id": session["id"]}, {"$set": {"expires_at": past}})

    with pytest.raises(SessionClosed) as raised:
        await MessageStore(db).append(org_id, session["id"], [message_record("x")])

    assert raised.value.reason == "expired"


async def test_append_to_a_missing_session_raises_session_not_found(
    db: Database, org_id: str
) -> None:
    with pytest.raises(SessionNotFound):
        await MessageStore(db).append(org_id, "missing", [message_record("x")])


async def test_in_ranges_reads_several_sessions_in_one_call(db: Database, org_id: str) -> None:
    one = await stored_session(db, org_id, messages=5)
    two = await stored_session(db, org_id, messages=3)
    three = await stored_session(db, org_id, messages=4)
    untouched = await stored_session(db, org_id, messages=2)

    found = await MessageStore(db).in_ranges(
        org_id,
        [(one["id"], 2, 4), (two["id"], 1, 3), (three["id"], 5, 9), (untouched["id"], 2, 1)],
    )

    assert {sid: [m["seq"] for m in ms] for sid, ms in found.items()} == {
        one["id"]: [2, 3, 4],
        two["id"]: [1, 2, 3],
    }
    assert [m["content"] for m in found[one["id"]]] == ["m2", "m3", "m4"]


# Organization scoping ---------------------------------------------------------------------


async def test_reads_of_another_organization_see_nothing(
    db: Database, org_id: str, other_org_id: str
) -> None:
    session = await stored_session(db, org_id, messages=3, name="mine")
    sessions = SessionStore(db)

    assert await sessions.get(other_org_id, session["id"]) is None
    assert await sessions.get_many(other_org_id, [session["id"]]) == {}
    assert (
        await sessions.list(other_org_id, SessionQuery(ids=(session["id"],)), first=10)
    ).items == []
    assert await sessions.count(other_org_id, SessionQuery(name="mine")) == 0
    assert await MessageStore(db).in_ranges(other_org_id, [(session["id"], 1, 3)]) == {}
    # Asked together with one of its own sessions, the other organization gets only that.
    theirs = await stored_session(db, other_org_id, messages=2)
    found = await MessageStore(db).in_ranges(
        other_org_id, [(session["id"], 1, 3), (theirs["id"], 1, 3)]
    )
    assert {sid: [m["seq"] for m in ms] for sid, ms in found.items()} == {theirs["id"]: [1, 2]}


async def test_update_from_another_organization_raises_and_changes_nothing(
    db: Database, org_id: str, other_org_id: str
) -> None:
    session = await stored_session(db, org_id, name="mine")

    with pytest.raises(SessionNotFound):
        await SessionStore(db).update(other_org_id, session["id"], {"name": "stolen"})
    with pytest.raises(SessionNotFound):
        await SessionStore(db).update(other_org_id, session["id"], {"expiration_seconds": 60})

    assert await SessionStore(db).get(org_id, session["id"]) == session


async def test_delete_from_another_organization_raises_and_deletes_nothing(
    db: Database, org_id: str, other_org_id: str
) -> None:
    session = await stored_session(db, org_id, messages=2)

    with pytest.raises(SessionNotFound):
        await SessionStore(db).delete(other_org_id, session["id"])

    assert await SessionStore(db).get(org_id, session["id"]) == session
    assert await db.messages.count_documents({"session_id": session["id"]}) == 2


async def test_append_from_another_organization_raises_and_appends_nothing(
    db: Database, org_id: str, other_org_id: str
) -> None:
    session = await stored_session(db, org_id, messages=1)

    with pytest.raises(SessionNotFound):
        await MessageStore(db).append(other_org_id, session["id"], [message_record("x")], "key-1")

    assert await SessionStore(db).get(org_id, session["id"]) == session
    assert await db.messages.count_documents({"session_id": session["id"]}) == 1


async def test_idempotency_keys_are_kept_per_organization(
    db: Database, org_id: str, other_org_id: str
) -> None:
    session = await stored_session(db, org_id)
    await MessageStore(db).append(org_id, session["id"], [message_record("x")], "key-1")

    # Another org retrying the key learns nothing about the session: it does not exist there.
    with pytest.raises(SessionNotFound):
        await MessageStore(db).append(other_org_id, session["id"], [message_record("x")], "key-1")


# Time and durability ----------------------------------------------------------------------


async def test_returned_times_are_timezone_aware_utc(db: Database, org_id: str) -> None:
    created, messages = await SessionStore(db).create(
        org_id, session_record(), [message_record("a")]
    )
    fetched = await SessionStore(db).get(org_id, created["id"])
    appended = await MessageStore(db).append(org_id, created["id"], [message_record("b")])
    assert fetched is not None

    times = [
        created["created_at"], created["updated_at"], created["expires_at"],
        fetched["created_at"], fetched["updated_at"], fetched["expires_at"],
        messages[0]["created_at"], appended[0]["created_at"],
    ]  # fmt: skip
    assert all(is_utc(t) for t in times), times


async def test_times_are_stored_as_bson_dates(db: Database, org_id: str) -> None:
    session = await stored_session(db, org_id, messages=1)

    raw_session = await db.sessions.find_one({"_id": session["id"]})
    raw_message = await db.messages.find_one({"session_id": session["id"]})

    assert raw_session is not None
    assert raw_message is not None
    for value in (
        raw_session["created_at"],
        raw_session["updated_at"],
        raw_session["expires_at"],
        raw_message["created_at"],
    ):
        assert isinstance(value, datetime)
    # The server agrees that these are dates, not strings or numbers.
    dated = {f: {"$type": "date"} for f in ("created_at", "updated_at", "expires_at")}
    assert await db.sessions.count_documents({"_id": session["id"], **dated}) == 1


async def test_writes_are_majority_and_journaled(db: Database) -> None:
    durable = {"w": "majority", "j": True}

    assert db.db.write_concern.document == durable
    for collection in (db.sessions, db.messages, db.api_keys, db.idempotency):
        assert collection.write_concern.document == durable


async def test_ensure_indexes_is_idempotent_and_makes_session_seq_unique(db: Database) -> None:
    await db.ensure_indexes()
    await db.ensure_indexes()

    indexes = await db.messages.index_information()

    unique_keys = [info["key"] for info in indexes.values() if info.get("unique")]
    assert [("session_id", 1), ("seq", 1)] in unique_keys


async def test_a_duplicate_session_seq_is_rejected_by_the_database(
    db: Database, org_id: str
) -> None:
    session = await stored_session(db, org_id, messages=1)
    duplicate = {
        "_id": str(uuid.uuid4()),
        "session_id": session["id"],
        "org_id": org_id,
        "seq": 1,
        "role": "user",
        "content": "impostor",
        "created_at": datetime.now(UTC),
    }

    with pytest.raises(DuplicateKeyError):
        await db.messages.insert_one(duplicate)


# API keys ---------------------------------------------------------------------------------


async def test_api_keys_are_stored_hashed(db: Database, org_id: str) -> None:
    record, key = await ApiKeyStore(db).create(org_id, "ci")

    raw = await db.api_keys.find_one({"_id": record["id"]})

    assert raw is not None
    assert key not in raw.values()
    assert all(key not in str(value) for value in raw.values())


async def test_api_key_identifies_its_organization(db: Database, org_id: str) -> None:
    _, key = await ApiKeyStore(db).create(org_id)

    assert await ApiKeyStore(db).organization_of(key) == org_id


async def test_revoked_api_key_identifies_no_organization(db: Database, org_id: str) -> None:
    keys = ApiKeyStore(db)
    record, key = await keys.create(org_id)

    await keys.revoke(record["id"])

    assert await keys.organization_of(key) is None


async def test_a_deleted_session_s_keys_are_found_by_an_index(
    mongo_uri: str, settings: Settings, org_id: str
) -> None:
    """The keys of a deleted session are read through an index whose leading fields are
    exactly the delete's filter, not by a scan of a day's keys."""
    recorder = CommandRecorder()
    db = await Database.connect(mongo_uri, settings.db_name, event_listeners=[recorder])
    try:
        await db.ensure_indexes()
        store = SessionStore(db)
        session, _ = await store.create(org_id, session_record(), [], idempotency_key="c")
        await MessageStore(db).append(
            org_id, session["id"], [message_record("a")], idempotency_key="k"
        )
        await store.delete(org_id, session["id"])
        indexes = await db.idempotency.index_information()
    finally:
        await db.close()
    deletes = [
        delete["q"]
        for name, body in recorder.sent_to("idempotency_keys")
        if name == "delete"
        for delete in body["deletes"]
    ]
    assert deletes, "the delete sent no delete to idempotency_keys"
    leading = [
        {field for field, _ in index["key"][: len(deletes[0])]} for index in indexes.values()
    ]
    for delete_filter in deletes:
        assert set(delete_filter) in leading, (delete_filter, indexes)
