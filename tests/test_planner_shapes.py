"""The storage layer's two query shapes, for a "full" planner (MongoDB) and a "simple" one
(the embedded database), return the same pages, counts and messages.

Both shapes run against the test database, whichever it is: the shape follows the planner the
`Database` is given, not the server it talks to.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sessiongraph.settings import Settings
from storage import (
    Database,
    MessageStore,
    SessionNotFound,
    SessionQuery,
    SessionRecord,
    SessionStore,
    TimeRange,
)
from storage.database import Planner, planner_of
from storage.records import SessionChanges, SessionOrderField, SessionStatusValue
from tests.command_log import CommandRecorder
from tests.factories import message_record, position_of, session_record

CUSTOMERS = ["+14155550001", "+14155550002", "+14155550003"]
BASE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# Minutes from BASE: ties, seconds apart, days apart, and months apart, so windows must grow.
OFFSETS = [0, 0, 0, 1, 2, 2, 60, 61, 1440, 1441, 10_000, 100_000, 100_000, 400_000]


@pytest.fixture
async def planners(
    mongo_uri: str, settings: Settings, database: Database
) -> AsyncIterator[dict[Planner, Database]]:
    """One connection per planner to the test database (`database` made the indexes)."""
    full = await Database.connect(mongo_uri, settings.db_name, planner="full")
    simple = await Database.connect(mongo_uri, settings.db_name, planner="simple")
    yield {"full": full, "simple": simple}
    await full.close()
    await simple.close()


async def seeded(db: Database, org_id: str) -> list[SessionRecord]:
    """Sessions of `org_id` whose times are OFFSETS minutes from BASE, some with messages."""
    store = SessionStore(db)
    records = []
    for n, minutes in enumerate(OFFSETS):
        fields = {
            "name": "even" if n % 2 == 0 else "odd",
            "customer": {"number": CUSTOMERS[n % 3]},
            "assistant_id": f"assistant-{n % 4}",
        }
        record, _ = await store.create(
            org_id, session_record(**fields), [message_record("a"), message_record("b")]
        )
        at = BASE + timedelta(minutes=minutes)
        changes: dict[str, Any] = {
            "created_at": at,
            "updated_at": at - timedelta(seconds=n),
            "status": "completed" if n % 5 == 0 else "active",
        }
        if n % 3 == 2:
            # Past its expiry, not yet swept: stored active, read as completed.
            changes["expires_at"] = at + timedelta(hours=1)
        await db.sessions.update_one({"_id": record["id"]}, {"$set": changes})
        records.append(record)
    return records


def ids(page_items: list[SessionRecord]) -> list[str]:
    return [item["id"] for item in page_items]


async def walk(store: SessionStore, org_id: str, query: SessionQuery, **order: Any) -> list[str]:
    """Every session, page by page forward, then the same backward; both in display order."""
    forward: list[str] = []
    after = None
    while True:
        page = await store.list(org_id, query, first=3, after=after, **order)
        forward += ids(page.items)
        if not page.has_next:
            break
        last = page.items[-1]
        after = position_of(last, order.get("order_by", "created_at"))
    backward: list[str] = []
    before = None
    while True:
        page = await store.list(org_id, query, last=4, before=before, **order)
        backward = ids(page.items) + backward
        if not page.has_previous:
            break
        head = page.items[0]
        before = position_of(head, order.get("order_by", "created_at"))
    assert forward == backward
    return forward


@pytest.mark.parametrize("order_by", ["created_at", "updated_at"])
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize(
    "query",
    [
        SessionQuery(),
        SessionQuery(name="even"),
        SessionQuery(status="active"),
        SessionQuery(created_at=TimeRange(gte=BASE + timedelta(minutes=2))),
        SessionQuery(updated_at=TimeRange(lt=BASE + timedelta(minutes=1441), gt=BASE)),
        SessionQuery(status="completed"),
        SessionQuery(name="odd", status="active"),
        SessionQuery(
            status="active",
            customer_numbers=(CUSTOMERS[0],),
            created_at=TimeRange(gte=BASE + timedelta(minutes=1)),
        ),
        SessionQuery(assistant_ids=("assistant-1", "assistant-2"), status="active"),
        SessionQuery(customer_numbers=tuple(CUSTOMERS[:2]), name="even"),
    ],
    ids=[
        "all",
        "name",
        "active",
        "created-from",
        "updated-between",
        "completed",
        "name-active",
        "readme-example",
        "assistants-active",
        "customers-name",
    ],
)
async def test_both_shapes_list_the_same_pages_in_the_same_order(
    planners: dict[Planner, Database], order_by: str, descending: bool, query: SessionQuery
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    await seeded(planners["full"], org_id)
    await seeded(planners["full"], f"other-{org_id}")  # another organization, never listed
    order = {"order_by": order_by, "descending": descending}

    full = await walk(SessionStore(planners["full"]), org_id, query, **order)
    simple = await walk(SessionStore(planners["simple"]), org_id, query, **order)

    assert simple == full
    assert len(full) == await SessionStore(planners["simple"]).count(org_id, query)
    assert len(full) == await SessionStore(planners["full"]).count(org_id, query)


async def test_the_unfiltered_first_page_finds_sessions_older_than_every_window(
    planners: dict[Planner, Database],
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    store = SessionStore(planners["simple"])
    record, _ = await store.create(org_id, session_record(), [])
    ancient = datetime(1990, 1, 1, tzinfo=UTC)
    await planners["simple"].sessions.update_one(
        {"_id": record["id"]}, {"$set": {"created_at": ancient, "updated_at": ancient}}
    )

    page = await store.list(org_id, SessionQuery(), first=5)

    assert ids(page.items) == [record["id"]]
    assert not page.has_next


async def test_both_shapes_read_the_same_message_ranges_of_several_sessions(
    planners: dict[Planner, Database],
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    records = await seeded(planners["full"], org_id)
    stranger = (await seeded(planners["full"], f"other-{org_id}"))[0]
    store = MessageStore(planners["full"])
    await store.append(org_id, records[1]["id"], [message_record(f"m{n}") for n in range(5)])
    ranges = [
        (records[1]["id"], 2, 6),
        (records[1]["id"], 5, 7),  # overlapping ranges of one session
        (records[0]["id"], 1, 1),
        (records[2]["id"], 3, 9),  # past the end
        (stranger["id"], 1, 2),  # another organization's session: nothing
        ("missing", 1, 5),
    ]

    full = await MessageStore(planners["full"]).in_ranges(org_id, ranges)
    simple = await MessageStore(planners["simple"]).in_ranges(org_id, ranges)

    assert simple == full
    assert [m["seq"] for m in full[records[1]["id"]]] == [2, 3, 4, 5, 6, 7]
    assert stranger["id"] not in full


async def deleted_by(db: Database, org_id: str) -> dict[str, Any]:
    """What deleting sessions of `org_id` with `db`'s shape does: a session (3 messages, an
    append's idempotency key) deleted from another organization, then from its own, then again;
    the neighbour session left alone. Ids, organization and times left out, to compare shapes."""
    store = SessionStore(db)
    target, _ = await store.create(
        org_id, session_record(name="target"), [message_record("a"), message_record("b")]
    )
    neighbour, _ = await store.create(
        org_id, session_record(name="neighbour"), [message_record("n")]
    )
    await MessageStore(db).append(org_id, target["id"], [message_record("c")], idempotency_key="k")
    outcome: dict[str, Any] = {}
    with pytest.raises(SessionNotFound):
        await store.delete(f"other-{org_id}", target["id"])
    outcome["kept_by_stranger"] = await store.get(org_id, target["id"]) is not None
    outcome["total_before"] = await store.count(org_id, SessionQuery())
    deleted = await store.delete(org_id, target["id"])
    outcome["deleted"] = {
        key: value
        for key, value in deleted.items()
        if key not in ("id", "org_id", "created_at", "updated_at", "expires_at")
    }
    outcome["deleted_is_target"] = (deleted["id"], deleted["org_id"]) == (target["id"], org_id)
    with pytest.raises(SessionNotFound):
        await store.delete(org_id, target["id"])
    outcome["total_after"] = await store.count(org_id, SessionQuery())
    outcome["left"] = {
        "session": await store.get(org_id, target["id"]),
        "messages": await db.messages.count_documents({"session_id": target["id"]}),
        "keys": await db.idempotency.count_documents({"session_id": target["id"]}),
        "neighbour": await store.get(org_id, neighbour["id"]) is not None,
        "neighbour_messages": await db.messages.count_documents({"session_id": neighbour["id"]}),
    }
    return outcome


async def test_both_shapes_delete_a_session_alike(planners: dict[Planner, Database]) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"

    full = await deleted_by(planners["full"], f"full-{org_id}")
    simple = await deleted_by(planners["simple"], f"simple-{org_id}")

    assert simple == full
    assert full["kept_by_stranger"]
    assert full["deleted_is_target"]
    assert full["deleted"]["message_count"] == 3
    assert full["deleted"]["name"] == "target"
    assert (full["total_before"], full["total_after"]) == (2, 1)
    assert full["left"] == {
        "session": None,
        "messages": 0,
        "keys": 0,
        "neighbour": True,
        "neighbour_messages": 1,
    }


async def updated_by(db: Database, org_id: str) -> dict[str, Any]:
    """What updating a session of `org_id` with `db`'s shape does: from another organization,
    then its name, status and expiration, then a missing id; ids and times left out."""
    store = SessionStore(db)
    target, _ = await store.create(org_id, session_record(name="before"), [])
    outcome: dict[str, Any] = {}
    with pytest.raises(SessionNotFound):
        await store.update(f"other-{org_id}", target["id"], {"name": "stolen"})
    changes: list[SessionChanges] = [
        {"name": "after"},
        {"status": "completed"},
        {"expiration_seconds": 60, "status": "active"},
        {"name": None},
    ]
    steps = []
    for change in changes:
        record = await store.update(org_id, target["id"], change)
        steps.append(
            {
                "record": {
                    k: v for k, v in record.items() if k not in ("id", "org_id", "updated_at")
                }
                | {"created_at": None, "expires_at": record["expires_at"] - record["created_at"]},
                "stored": await store.get(org_id, target["id"]) == record,
                "moved": record["updated_at"] >= target["updated_at"],
            }
        )
    outcome["steps"] = steps
    with pytest.raises(SessionNotFound):
        await store.update(org_id, f"missing-{target['id']}", {"name": "x"})
    kept = await store.get(org_id, target["id"])
    outcome["name_at_the_end"] = kept["name"] if kept else "(gone)"
    return outcome


async def test_both_shapes_update_a_session_alike(
    planners: dict[Planner, Database], mongo_uri: str, settings: Settings
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"

    full = await updated_by(planners["full"], f"full-{org_id}")
    simple = await updated_by(planners["simple"], f"simple-{org_id}")

    assert simple == full
    assert [step["record"]["name"] for step in full["steps"]] == ["after", "after", "after", None]
    assert [step["record"]["status"] for step in full["steps"]][1:3] == ["completed", "active"]
    assert full["steps"][2]["record"]["expires_at"] == timedelta(seconds=60)
    assert all(step["stored"] and step["moved"] for step in full["steps"])
    # The simple shape never sends findAndModify, which that planner runs as a collection scan.
    recorder = CommandRecorder()
    db = await Database.connect(
        mongo_uri, settings.db_name, planner="simple", event_listeners=[recorder]
    )
    try:
        target, _ = await SessionStore(db).create(org_id, session_record(), [])
        recorder.commands.clear()
        await SessionStore(db).update(org_id, target["id"], {"name": "renamed"})
    finally:
        await db.close()
    names = [name for name, _ in recorder.sent_to("sessions")]
    assert "findAndModify" not in names
    assert "update" in names


async def test_the_planner_is_learned_from_the_server_at_connect_time(
    mongo_uri: str, settings: Settings
) -> None:
    db = await Database.connect(mongo_uri, settings.db_name)
    try:
        build_info = await db.client.admin.command("buildInfo")
        assert db.planner == planner_of(build_info)
    finally:
        await db.close()
    assert planner_of({"version": "8.0.4", "secantusVersion": "0.7.0b3"}) == "simple"
    assert planner_of({"version": "8.0.4"}) == "full"


def session_finds(recorder: CommandRecorder) -> list[dict[str, Any]]:
    """The filters of the `find` commands the recorder saw sent to the `sessions` collection."""
    return [body["filter"] for name, body in recorder.sent_to("sessions") if name == "find"]


async def test_the_simple_shape_reads_ids_first_only_when_its_planner_cannot_serve_a_filter(
    mongo_uri: str, settings: Settings, database: Database
) -> None:
    recorder = CommandRecorder()
    db = await Database.connect(
        mongo_uri, settings.db_name, planner="simple", event_listeners=[recorder]
    )
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    store = SessionStore(db)
    await store.create(org_id, session_record(name="even"), [])
    try:
        recorder.commands.clear()
        await store.list(org_id, SessionQuery(name="even"), first=5)
        served = session_finds(recorder)
        recorder.commands.clear()
        await store.list(org_id, SessionQuery(name="even", status="active"), first=5)
        narrowed = session_finds(recorder)
        recorder.commands.clear()
        await store.list(org_id, SessionQuery(name="odd", status="active"), first=5)
        none_found = session_finds(recorder)
    finally:
        await db.close()

    # Equalities leading the (org_id, name, created_at) index: one query as it stands.
    assert served == [{"org_id": org_id, "name": "even"}]
    # Plus an expires_at range no index serves with them: the ids by name first, then the
    # whole filter led by those ids.
    assert narrowed[0] == {"org_id": org_id, "name": "even"}
    assert list(narrowed[1]) == ["_id", "org_id", "status", "expires_at", "name"]
    # Ids first that find none: nothing more is asked.
    assert none_found == [{"org_id": org_id, "name": "odd"}]


@pytest.mark.parametrize(
    ("order_by", "status"),
    [("created_at", None), ("updated_at", None), ("created_at", "completed")],
)
async def test_the_simple_shapes_windows_hold_little_more_than_the_page(
    mongo_uri: str,
    settings: Settings,
    database: Database,
    order_by: SessionOrderField,
    status: SessionStatusValue | None,
) -> None:
    # 120 sessions an hour apart, newest first: once a window has found some, the next is
    # sized by their density, so the windows hold about the page, not up to 4 times it.
    # A status is read in windows too, on the (org_id, status, created_at) index.
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    store = SessionStore(database)
    newest: list[str] = []
    for hours in range(120):
        record, _ = await store.create(org_id, session_record(status=status or "active"), [])
        newest.append(record["id"])
        at = now - timedelta(hours=hours, minutes=30)
        await database.sessions.update_one(
            {"_id": record["id"]}, {"$set": {"created_at": at, "updated_at": at}}
        )
    recorder = CommandRecorder()
    db = await Database.connect(
        mongo_uri, settings.db_name, planner="simple", event_listeners=[recorder]
    )
    try:
        query = SessionQuery(status=status)
        page = await SessionStore(db).list(org_id, query, order_by=order_by, first=40)
        windows = session_finds(recorder)
        held = [await db.sessions.count_documents(window) for window in windows]
    finally:
        await db.close()

    assert ids(page.items) == newest[:40]
    assert page.has_next
    # 41 wanted (one more tells whether a next page exists).
    assert sum(held) <= 41 * 1.3, (held, windows)
