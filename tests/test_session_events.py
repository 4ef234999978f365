"""The org-wide feed, `sessionEvents`: live events of every kind, replay from a cursor then
live (exactly once, in order, with writes racing the replay), resumption across a server
restart and across server processes, isolation between organizations, expired and malformed
cursors, and the expiry sweep that makes an expiry an event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from resolvers.session_events import session_event_stream
from sessiongraph.auth import Caller
from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import Database, MessageStore, SessionStore
from storage.clock import utc_now
from storage.events import EventHub
from storage.session_event_feed import EventFeed
from storage.session_events import LogPosition, SessionEventLog
from tests.api_client import ApiClient
from tests.factories import message_record, session_record
from tests.keys import new_org_key
from tests.operations import (
    CREATE_ACCESS_TOKEN,
    CREATE_SESSION_ID,
    DELETE_SESSION,
    UPDATE_SESSION,
)
from tests.serving import server_process, serving
from tests.sse_client import sse
from tests.ws_client import PROTOCOLS, Protocol, WsClient, connected, wait_until

SESSION_EVENTS = """
subscription Feed($after: String) {
  sessionEvents(after: $after) { cursor type sessionId at session { id name status messageCount } }
}
"""

ADD_MESSAGE = """
mutation Add($sessionId: ID!) {
  addMessages(sessionId: $sessionId, messages: [{user: {content: "hello"}}]) { seq }
}
"""

RACING_WRITES = 20
OPLOG_PRUNE_WRITES = 1100
"""Writes after which SecantusDB has pruned its oplog down to --oplog-max-entries."""


def hub_of(app: Starlette) -> EventHub:
    hub: EventHub = app.state.services.events
    return hub


@pytest.fixture
async def hub(app: Starlette, server: str) -> EventHub:
    """The shared server's event hub, once earlier tests' feeds have gone."""
    events = hub_of(app)
    await wait_until(lambda: events.session_events.feed_count == 0, "earlier feeds are released")
    return events


async def create(api: ApiClient, **fields: Any) -> str:
    created = await api.data(CREATE_SESSION_ID, {"input": fields})
    session_id: str = created["createSession"]["id"]
    return session_id


async def subscribe(
    client: WsClient, hub: EventHub, after: str | None = None, id: str = "feed"
) -> None:
    """Start the feed and wait until it is registered (so live events reach it)."""
    before = hub.session_events.feed_count
    await client.subscribe(id, SESSION_EVENTS, {"after": after})
    await wait_until(lambda: hub.session_events.feed_count > before, "the feed is registered")


async def events_until(client: WsClient, count: int, id: str = "feed") -> list[dict[str, Any]]:
    return [(await client.data(id))["sessionEvents"] for _ in range(count)]


async def refusal(client: WsClient, id: str = "feed") -> dict[str, Any]:
    """The one error of subscription `id`, which fails at its start and then completes."""
    message = await client.receive()
    assert message["id"] == id, message
    errors = message["payload"]["errors"]
    assert len(errors) == 1, errors
    assert await client.receive() == {"id": id, "type": "complete"}
    error: dict[str, Any] = errors[0]
    return error


async def logged(database: Database, org_id: str) -> list[tuple[str, str, str]]:
    """The organization's logged events as (cursor, type, session id), in commit order."""
    found = database.db["session_events"].find({"org_id": org_id}).sort("_id", 1)
    return [(d["_id"], d["type"], d["session_id"]) for d in await found.to_list(None)]


def triples(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["cursor"], e["type"], e["sessionId"]) for e in events]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_kind_of_change_arrives_live_in_commit_order(
    hub: EventHub, server: str, api: ApiClient, org: tuple[str, str], protocol: Protocol
) -> None:
    async with connected(server, org[1], protocol) as client:
        await subscribe(client, hub)
        session_id = await create(api, name="first")
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"name": "second"}})
        await api.data(ADD_MESSAGE, {"sessionId": session_id})
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        await api.data(DELETE_SESSION, {"id": session_id})

        events = await events_until(client, 5)

    assert [(e["type"], e["sessionId"]) for e in events] == [
        ("CREATED", session_id),
        ("UPDATED", session_id),
        ("UPDATED", session_id),
        ("COMPLETED", session_id),
        ("DELETED", session_id),
    ]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == 5
    # `session` is read at delivery: by then it may be gone; a delete never carries one.
    assert events[-1]["session"] is None
    assert all(e["session"] is None or e["session"]["id"] == session_id for e in events)
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)


async def test_an_append_is_an_update_carrying_the_new_message_count(
    hub: EventHub, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    async with connected(server, org[1]) as client:
        await subscribe(client, hub)
        session_id = await create(api)
        await api.data(ADD_MESSAGE, {"sessionId": session_id})
        created, event = await events_until(client, 2)
    assert (created["type"], event["type"]) == ("CREATED", "UPDATED")
    assert event["session"]["messageCount"] == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cursor_replays_every_later_event_then_goes_live_exactly_once_in_order(
    hub: EventHub,
    server: str,
    api: ApiClient,
    org: tuple[str, str],
    database: Database,
    protocol: Protocol,
) -> None:
    async with connected(server, org[1], protocol) as client:
        await subscribe(client, hub)
        first = await create(api, name="before the drop")
        cursor = (await events_until(client, 1))[0]["cursor"]
        client.drop()
    # While disconnected: changes of every kind.
    missed = await create(api, name="while away")
    await api.data(ADD_MESSAGE, {"sessionId": missed})
    await api.data(DELETE_SESSION, {"id": first})

    async def keep_writing() -> None:
        for _ in range(RACING_WRITES):
            await api.data(ADD_MESSAGE, {"sessionId": missed})

    async with connected(server, org[1], protocol) as client:
        writer = asyncio.create_task(keep_writing())
        await client.subscribe("feed", SESSION_EVENTS, {"after": cursor})
        await writer
        await api.data(UPDATE_SESSION, {"id": missed, "input": {"name": "the last"}})
        received = await events_until(client, 3 + RACING_WRITES + 1)
        expected = [e for e in await logged(database, org[0]) if e[0] > cursor]
        assert triples(received) == expected
        assert [e[1] for e in expected[:3]] == ["CREATED", "UPDATED", "DELETED"]
        # Nothing more: the next event is the next change.
        await api.data(ADD_MESSAGE, {"sessionId": missed})
        following = (await events_until(client, 1))[0]
        assert following["cursor"] > expected[-1][0]
        assert following["type"] == "UPDATED"


async def test_another_organizations_events_never_appear_live_or_replayed(
    hub: EventHub, server: str, api: ApiClient, other_api: ApiClient, org: tuple[str, str]
) -> None:
    async with connected(server, org[1]) as client:
        await subscribe(client, hub)
        before = await create(api)
        cursor = (await events_until(client, 1))[0]["cursor"]
        theirs = await create(other_api)
        await other_api.data(ADD_MESSAGE, {"sessionId": theirs})
        await other_api.data(DELETE_SESSION, {"id": theirs})
        ours = await create(api)
        live = (await events_until(client, 1))[0]
        assert (live["type"], live["sessionId"]) == ("CREATED", ours)
    async with connected(server, org[1]) as client:
        await client.subscribe("again", SESSION_EVENTS, {"after": cursor})
        replayed = (await events_until(client, 1, "again"))[0]
        assert replayed["cursor"] == live["cursor"]
        await api.data(DELETE_SESSION, {"id": before})
        following = (await events_until(client, 1, "again"))[0]
        assert (following["type"], following["sessionId"]) == ("DELETED", before)


async def test_a_cursor_of_another_organization_is_refused_as_expired(
    hub: EventHub, server: str, other_api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    theirs = await create(other_api)
    async with connected(server, org[1]) as client:
        their_cursor = await wait_for_logged(database, theirs)
        await client.subscribe("feed", SESSION_EVENTS, {"after": their_cursor})
        error = await refusal(client)
    assert error["extensions"]["code"] == "CURSOR_EXPIRED"


async def wait_for_logged(database: Database, session_id: str) -> str:
    """The cursor of the first logged event of `session_id`, once it is logged."""
    events = database.db["session_events"]
    for _ in range(500):
        doc = await events.find_one({"session_id": session_id})
        if doc is not None:
            cursor: str = doc["_id"]
            return cursor
        await asyncio.sleep(0.02)
    raise AssertionError(f"no event of {session_id} was logged")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cursor_whose_event_left_the_log_gets_cursor_expired(
    hub: EventHub,
    server: str,
    api: ApiClient,
    org: tuple[str, str],
    database: Database,
    protocol: Protocol,
) -> None:
    session_id = await create(api)
    cursor = await wait_for_logged(database, session_id)
    # What the TTL index does once the retention period has passed.
    await database.db["session_events"].delete_one({"_id": cursor})
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("feed", SESSION_EVENTS, {"after": cursor})
        error = await refusal(client)
    assert error["extensions"] == {"code": "CURSOR_EXPIRED", "cursor": cursor}
    assert "86400 s" in error["message"]


@pytest.mark.parametrize("cursor", ["", "nonsense", "0" * 20, "zz" * 10 + "-abc", "x" * 300])
async def test_a_malformed_cursor_is_bad_user_input(
    hub: EventHub, server: str, org: tuple[str, str], cursor: str
) -> None:
    async with connected(server, org[1]) as client:
        await client.subscribe("feed", SESSION_EVENTS, {"after": cursor})
        error = await refusal(client)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "after" in error["message"]
    assert hub.session_events.feed_count == 0


async def test_a_cursor_before_a_gap_in_the_log_gets_cursor_expired(
    settings: Settings, lone_database: tuple[str, Database]
) -> None:
    db_name, db = lone_database
    _, key = await new_org_key(db)
    async with serving(settings, db_name=db_name) as (url, app), ApiClient(url, key) as api:
        session_id = await create(api)
        cursor = await wait_for_logged(db, session_id)
        later = await create(api)
        later_cursor = await wait_for_logged(db, later)
        # What a process does when its change stream cannot resume from the checkpoint:
        # changes after it may be missing from the log, so cursors up to it are refused.
        time, inc, index = int(cursor[:8], 16), int(cursor[8:16], 16), int(cursor[16:20], 16)
        await SessionEventLog(db).mark_gap(LogPosition(None, time, inc, index))
        async with connected(url, key) as client:
            await client.subscribe("feed", SESSION_EVENTS, {"after": cursor})
            error = await refusal(client)
            assert error["extensions"]["code"] == "CURSOR_EXPIRED"
            await client.subscribe("later", SESSION_EVENTS, {"after": later_cursor})
            await wait_until(lambda: hub_of(app).session_events.feed_count == 1, "it is live")


async def own_database(settings: Settings, db_name: str) -> Database:
    assert settings.mongodb_uri is not None
    db = await Database.connect(settings.mongodb_uri, db_name)
    await db.ensure_indexes()
    return db


@pytest.fixture
async def lone_database(settings: Settings) -> AsyncIterator[tuple[str, Database]]:
    """A database of its own, which only the servers a test starts watch."""
    db_name = f"feed_{uuid.uuid4().hex[:8]}"
    db = await own_database(settings, db_name)
    try:
        yield db_name, db
    finally:
        await db.client.drop_database(db_name)
        await db.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_changes_made_while_no_server_ran_are_replayed_after_a_restart(
    settings: Settings, lone_database: tuple[str, Database], protocol: Protocol
) -> None:
    db_name, db = lone_database
    org_id, key = await new_org_key(db)
    async with (
        serving(settings, db_name=db_name) as (url, app),
        ApiClient(url, key) as api,
        connected(url, key, protocol) as client,
    ):
        await subscribe(client, hub_of(app))
        first = await create(api, name="before")
        cursor = (await events_until(client, 1))[0]["cursor"]
    # No server runs: these commit with nobody watching (a crashed fleet, say).
    sessions, messages = SessionStore(db), MessageStore(db)
    made, _ = await sessions.create(org_id, session_record(name="while down"), [])
    await messages.append(org_id, made["id"], [message_record("hi")])
    await sessions.delete(org_id, first)
    async with (
        serving(settings, db_name=db_name) as (url, app),
        ApiClient(url, key) as api,
        connected(url, key, protocol) as client,
    ):
        await client.subscribe("feed", SESSION_EVENTS, {"after": cursor})
        replayed = await events_until(client, 3)
        assert [(e["type"], e["sessionId"]) for e in replayed] == [
            ("CREATED", made["id"]),
            ("UPDATED", made["id"]),
            ("DELETED", first),
        ]
        await api.data(UPDATE_SESSION, {"id": made["id"], "input": {"name": "after"}})
        live = (await events_until(client, 1))[0]
        assert (live["type"], live["session"]["name"]) == ("UPDATED", "after")
        assert live["cursor"] > replayed[-1]["cursor"] > cursor


async def test_an_event_written_through_one_server_process_reaches_a_subscriber_of_another(
    hub: EventHub,
    server: str,
    settings: Settings,
    mongo_uri: str,
    org: tuple[str, str],
    tmp_path: Path,
) -> None:
    async with (
        server_process(settings, mongo_uri, tmp_path / "other.log") as (other, _),
        ApiClient(other, org[1]) as api,
        connected(server, org[1]) as client,
    ):
        await subscribe(client, hub)
        session_id = await create(api)
        await api.data(DELETE_SESSION, {"id": session_id})
        events = await events_until(client, 2)
    assert [(e["type"], e["sessionId"]) for e in events] == [
        ("CREATED", session_id),
        ("DELETED", session_id),
    ]


async def test_an_expiry_is_marked_once_and_reported_as_completed(
    settings: Settings, org: tuple[str, str], database: Database, hub: EventHub, server: str
) -> None:
    async with (
        serving(settings, expiry_sweep_seconds=0.1) as (url, _),
        serving(settings, expiry_sweep_seconds=0.1),
        ApiClient(url, org[1]) as api,
        connected(server, org[1]) as client,
    ):
        await subscribe(client, hub)
        session_id = await create(api, expirationSeconds=60)
        past = utc_now() - timedelta(seconds=1)
        stored = await database.sessions.find_one({"_id": session_id})
        assert stored is not None
        await database.sessions.update_one({"_id": session_id}, {"$set": {"expires_at": past}})
        events = await events_until(client, 3)
        assert [e["type"] for e in events] == ["CREATED", "UPDATED", "COMPLETED"]
        assert events[2]["session"]["status"] == "COMPLETED"
        swept = await database.sessions.find_one({"_id": session_id})
        assert swept is not None
        # The mark changes nothing a reader sees: it read as completed already.
        assert (swept["status"], swept["updated_at"]) == ("completed", stored["updated_at"])
        await asyncio.sleep(0.5)  # more sweeps, by both servers: none marks it again
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"name": "renamed"}})
        following = (await events_until(client, 1))[0]
        assert following["type"] == "UPDATED"


async def test_a_new_expiry_reopens_a_session_the_sweep_completed(
    settings: Settings, org: tuple[str, str], database: Database
) -> None:
    async with (
        serving(settings, expiry_sweep_seconds=0.1) as (url, _),
        ApiClient(url, org[1]) as api,
    ):
        session_id = await create(api, expirationSeconds=60)
        await database.sessions.update_one(
            {"_id": session_id}, {"$set": {"expires_at": utc_now() - timedelta(seconds=1)}}
        )

        async def swept() -> bool:
            doc = await database.sessions.find_one({"_id": session_id})
            return doc is not None and doc["status"] == "completed"

        for _ in range(250):
            if await swept():
                break
            await asyncio.sleep(0.02)
        assert await swept()
        updated = await api.data(
            UPDATE_SESSION, {"id": session_id, "input": {"expirationSeconds": 3600}}
        )
    assert updated["updateSession"]["status"] == "ACTIVE"


async def test_without_change_streams_the_feed_is_refused_with_a_code(
    settings: Settings, org: tuple[str, str]
) -> None:
    async with serving(settings, events_mode="local") as (url, _), connected(url, org[1]) as client:
        await client.subscribe("feed", SESSION_EVENTS, {"after": None})
        error = await refusal(client)
    assert error["extensions"]["code"] == "FEED_UNAVAILABLE"


async def test_feeds_are_released_when_subscribers_leave(
    hub: EventHub, server: str, org: tuple[str, str]
) -> None:
    async with connected(server, org[1]) as client:
        await subscribe(client, hub, id="a")
        await subscribe(client, hub, id="b")
        assert hub.session_events.feed_count == 2
        await client.complete("a")
        await wait_until(lambda: hub.session_events.feed_count == 1, "one feed is released")
        client.drop()
    await wait_until(lambda: hub.session_events.feed_count == 0, "every feed is released")


async def test_the_replay_query_is_answered_by_the_org_index(
    database: Database, settings: Settings
) -> None:
    log = SessionEventLog(database)
    await log.ensure_indexes()
    plan = await database.db.command(
        "explain",
        {
            "find": "session_events",
            "filter": {"org_id": "org-x", "_id": {"$gt": "0" * 20}},
            "sort": {"org_id": 1, "_id": 1},
            "limit": 500,
        },
    )
    assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"])
    assert "org_id_1__id_1" in str(plan["queryPlanner"]["winningPlan"])


async def test_a_subscriber_that_falls_behind_rereads_what_it_missed_from_the_log(
    settings: Settings, org: tuple[str, str], database: Database
) -> None:
    async with serving(settings, subscriber_buffer=2) as (url, app), ApiClient(url, org[1]) as api:
        hub = hub_of(app)
        # The stream driven directly, so that the test decides when it is read.
        stream = session_event_stream(app.state.services.context(Caller(org[0])), None)
        # An async generator, which the test closes when done with it.
        assert isinstance(stream, AsyncGenerator)
        first = asyncio.ensure_future(anext(stream))
        await wait_until(lambda: hub.session_events.feed_count == 1, "the feed is registered")
        created = [await create(api)]
        assert (await first).session_id == created[0]
        # Five events while it is not read: three more than its feed holds.
        created += [await create(api) for _ in range(5)]
        await wait_for_logged(database, created[-1])
        await wait_until(lambda: feed_of(hub).missed_from is not None, "the feed overflows")
        following = [await anext(stream) for _ in range(5)]
        await stream.aclose()
        assert [e.session_id for e in following] == created[1:]
        assert [e.type for e in following] == ["CREATED"] * 5
        await wait_until(lambda: hub.session_events.feed_count == 0, "the feed is released")


def feed_of(hub: EventHub) -> EventFeed:
    (feeds,) = hub.session_events._feeds.values()
    (feed,) = feeds
    return feed


async def test_a_session_scope_keeps_only_those_sessions_events(
    hub: EventHub, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    kept, other = await create(api), await create(api)
    first = await wait_for_logged(database, kept)
    await api.data(ADD_MESSAGE, {"sessionId": other})
    await api.data(ADD_MESSAGE, {"sessionId": kept})
    event_log = hub.event_log
    assert event_log is not None
    for _ in range(250):
        everything, _ = await event_log.after(org[0], first, 500)
        if len(everything) == 3:  # other's CREATED and UPDATED, kept's UPDATED
            break
        await asyncio.sleep(0.02)
    scoped, _ = await event_log.after(org[0], first, 500, session_ids={kept})
    assert [(e.session_id, e.type) for e in scoped] == [(kept, "UPDATED")]


async def test_a_restart_past_the_oplog_window_leaves_a_gap_that_old_cursors_are_refused_at(
    settings: Settings,
) -> None:
    # A database whose oplog keeps only the last 20 changes (pruned every 1,000 writes).
    small = EmbeddedDatabase(data_dir=None, extra_args=("--oplog-max-entries", "20"))
    await small.start_async()
    db = None
    try:
        db = await Database.connect(small.uri, settings.db_name)
        await db.ensure_indexes()
        org_id, key = await new_org_key(db)
        changes = {"mongodb_uri": small.uri}
        async with (
            serving(settings, **changes) as (url, app),
            ApiClient(url, key) as api,
            connected(url, key) as client,
        ):
            await subscribe(client, hub_of(app))
            await create(api)
            cursor = (await events_until(client, 1))[0]["cursor"]
        # While no server runs, more changes than the oplog keeps.
        for _ in range(3):
            await SessionStore(db).create(org_id, session_record(), [])
        await db.db["filler"].insert_many([{"n": n} for n in range(OPLOG_PRUNE_WRITES)])
        async with (
            serving(settings, **changes) as (url, app),
            ApiClient(url, key) as api,
            connected(url, key) as client,
        ):
            await client.subscribe("old", SESSION_EVENTS, {"after": cursor})
            error = await refusal(client, "old")
            assert error["extensions"]["code"] == "CURSOR_EXPIRED"
            # The feed goes on from now.
            await subscribe(client, hub_of(app))
            session_id = await create(api)
            event = (await events_until(client, 1))[0]
            assert (event["type"], event["sessionId"]) == ("CREATED", session_id)
    finally:
        if db is not None:
            await db.close()
        await small.stop_async()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_token_scoped_to_sessions_sees_only_their_events(
    hub: EventHub, server: str, api: ApiClient, protocol: Protocol
) -> None:
    kept, other = await create(api, name="kept"), await create(api, name="other")
    minted = await api.data(CREATE_ACCESS_TOKEN, {"input": {"sessionIds": [kept]}})
    token = minted["createAccessToken"]["token"]
    async with connected(server, token, protocol) as client:
        await subscribe(client, hub)
        await api.data(UPDATE_SESSION, {"id": other, "input": {"name": "other, renamed"}})
        await api.data(ADD_MESSAGE, {"sessionId": other})
        await api.data(UPDATE_SESSION, {"id": kept, "input": {"name": "kept, renamed"}})

        (event,) = await events_until(client, 1)
        await api.data(DELETE_SESSION, {"id": other})
        await api.data(DELETE_SESSION, {"id": kept})
        (deleted,) = await events_until(client, 1)

    assert (event["type"], event["sessionId"]) == ("UPDATED", kept)
    assert event["session"]["name"] == "kept, renamed"
    assert (deleted["type"], deleted["sessionId"]) == ("DELETED", kept)


async def test_the_feed_streams_over_sse_and_resumes_after_a_cursor(
    hub: EventHub, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    before = hub.session_events.feed_count
    async with sse(server, org[1], SESSION_EVENTS, {"after": None}) as stream:
        assert stream.response.status_code == 200
        await wait_until(lambda: hub.session_events.feed_count > before, "the feed is registered")
        first = await create(api, name="over SSE")
        created = (await stream.next()).json()["data"]["sessionEvents"]
        second = await create(api, name="after the drop")
    assert (created["type"], created["sessionId"]) == ("CREATED", first)

    # The stream dropped; resuming after the last cursor it saw misses nothing.
    async with sse(server, org[1], SESSION_EVENTS, {"after": created["cursor"]}) as stream:
        resumed = (await stream.next()).json()["data"]["sessionEvents"]
    assert (resumed["type"], resumed["sessionId"]) == ("CREATED", second)
    assert resumed["cursor"] > created["cursor"]
