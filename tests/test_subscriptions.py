"""Subscriptions over websockets: both protocols, authentication, protocol errors, replay
then live delivery, resumption, completion, isolation between organizations, keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette

from sessiongraph.settings import Settings
from storage import Database
from storage.clock import utc_now
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.factories import create_session, numbered_messages
from tests.keys import new_org_key
from tests.operations import DELETE_SESSION, UPDATE_SESSION
from tests.serving import serving
from tests.ws_client import (
    LEGACY_WS,
    PROTOCOLS,
    TRANSPORT_WS,
    Protocol,
    WsClient,
    connect,
    connected,
    wait_until,
)

MESSAGE_ADDED = """
subscription MessageAdded($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { __typename sessionId seq content }
}
"""

SESSION_UPDATED = """
subscription SessionUpdated($id: ID!) {
  sessionUpdated(id: $id) { id name status messageCount }
}
"""

ADD_MESSAGE_SEQS = """
mutation AddSeqs($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""

CONCURRENT_APPENDS = 30
RESUME_TOTAL = 1000
RESUME_BATCH = 20
IDENTICAL_JOIN_ATTEMPTS = 10


async def append(api: ApiClient, session_id: str, count: int, first: int) -> None:
    """Append `count` messages expected to take seqs `first`..`first + count - 1`."""
    added = await api.data(
        ADD_MESSAGE_SEQS, {"sessionId": session_id, "messages": numbered_messages(count, first)}
    )
    assert [m["seq"] for m in added["addMessages"]] == list(range(first, first + count))


def seqs(results: list[dict[str, Any]]) -> list[int]:
    return [result["messageAdded"]["seq"] for result in results]


async def seqs_until(client: WsClient, id: str, last: int) -> list[int]:
    """Seqs of subscription `id`'s results, read until one carries `last`."""
    received: list[int] = []
    while not received or received[-1] < last:
        received.append((await client.data(id))["messageAdded"]["seq"])
    return received


async def session_update_where(
    client: WsClient, id: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first sessionUpdated result that meets `condition` (earlier states may arrive)."""
    while True:
        session: dict[str, Any] = (await client.data(id))["sessionUpdated"]
        if condition(session):
            return session


async def refusal(client: WsClient, id: str) -> dict[str, Any]:
    """The one error of subscription `id`, which fails at its start and then completes."""
    message = await client.receive()
    assert message["id"] == id, message
    assert message["type"] == "next", message
    assert message["payload"]["data"] is None, message
    errors = message["payload"]["errors"]
    assert len(errors) == 1, errors
    assert await client.receive() == {"id": id, "type": "complete"}
    error: dict[str, Any] = errors[0]
    return error


@pytest.fixture
async def hub(app: Starlette, server: str) -> EventHub:
    """The shared server's event hub, once earlier tests' subscribers have gone."""
    events: EventHub = app.state.services.events
    await wait_until(lambda: events.feed_count == 0, "earlier subscriptions are released")
    return events


@pytest.fixture(scope="module")
async def tight_server(settings: Settings, database: Database) -> AsyncIterator[str]:
    """A server of its own with small limits, fast keep-alives and local events."""
    async with serving(
        settings,
        ws_max_subscriptions=2,
        ws_init_timeout_seconds=0.5,
        ws_keep_alive_seconds=0.2,
        subscriber_buffer=4,
        events_mode="local",
    ) as (url, _):
        yield url


# Both protocols, and authentication


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_both_protocols_deliver_message_added(
    server: str, api: ApiClient, org: tuple[str, str], protocol: Protocol
) -> None:
    session_id = await create_session(api, messages=numbered_messages(2))
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        first = await client.data("1")
        second = await client.data("1")
    assert first["messageAdded"] == {
        "__typename": "UserMessage",
        "sessionId": session_id,
        "seq": 1,
        "content": "message 1",
    }
    assert second["messageAdded"]["seq"] == 2


@pytest.mark.parametrize("name", ["authorization", "Authorization"])
async def test_the_key_is_accepted_in_the_connection_init_payload(
    server: str, api: ApiClient, org: tuple[str, str], name: str
) -> None:
    session_id = await create_session(api, messages=numbered_messages(1))
    async with connect(server) as client:
        assert (await client.init({name: f"Bearer {org[1]}"}))["type"] == "connection_ack"
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        assert (await client.data("1"))["messageAdded"]["seq"] == 1


async def test_the_key_is_accepted_nested_under_headers_in_the_payload(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(1))
    async with connect(server) as client:
        ack = await client.init({"headers": {"Authorization": f"Bearer {org[1]}"}})
        assert ack["type"] == "connection_ack"
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        assert (await client.data("1"))["messageAdded"]["seq"] == 1


async def test_the_key_is_accepted_from_the_upgrade_request_header(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(1))
    async with connect(server, headers={"Authorization": f"Bearer {org[1]}"}) as client:
        assert (await client.init({}))["type"] == "connection_ack"
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        assert (await client.data("1"))["messageAdded"]["seq"] == 1


async def test_a_bad_key_closes_with_4403(server: str) -> None:
    async with connect(server) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": "Bearer nope"}})
        assert await client.close_code() == 4403


async def test_a_missing_key_closes_with_4403(server: str) -> None:
    async with connect(server) as client:
        await client.send({"type": "connection_init", "payload": {}})
        assert await client.close_code() == 4403


async def test_a_bad_key_in_the_upgrade_header_closes_with_4403(server: str) -> None:
    async with connect(server, headers={"Authorization": "Bearer nope"}) as client:
        await client.send({"type": "connection_init", "payload": {}})
        assert await client.close_code() == 4403


async def test_a_bad_key_in_the_payload_is_refused_even_with_a_good_upgrade_header(
    server: str, org: tuple[str, str]
) -> None:
    async with connect(server, headers={"Authorization": f"Bearer {org[1]}"}) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": "Bearer x"}})
        assert await client.close_code() == 4403


async def test_graphql_ws_refuses_a_bad_key_with_connection_error(server: str) -> None:
    async with connect(server, LEGACY_WS) as client:
        answer = await client.init({"authorization": "Bearer nope"})
        assert answer["type"] == "connection_error"
        assert await client.close_code() == 1011


# Protocol errors (graphql-transport-ws)


async def test_a_duplicate_subscription_id_closes_with_4409(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("same", MESSAGE_ADDED, {"sessionId": session_id})
        await client.subscribe("same", MESSAGE_ADDED, {"sessionId": session_id})
        assert await client.close_code() == 4409


async def test_subscribing_before_connection_ack_closes_with_4401(
    server: str, api: ApiClient
) -> None:
    session_id = await create_session(api)
    async with connect(server) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        assert await client.close_code() == 4401


async def test_a_second_connection_init_closes_with_4429(server: str, org: tuple[str, str]) -> None:
    async with connected(server, org[1]) as client:
        await client.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {org[1]}"}}
        )
        assert await client.close_code() == 4429


async def test_a_frame_that_is_not_json_closes_with_4400(server: str, org: tuple[str, str]) -> None:
    async with connected(server, org[1]) as client:
        await client.send_text("{not json")
        assert await client.close_code() == 4400


async def test_no_connection_init_within_the_timeout_closes_with_4408(tight_server: str) -> None:
    async with connect(tight_server) as client:
        assert await client.close_code() == 4408


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_beyond_the_cap_gets_an_error(
    tight_server: str, database: Database, protocol: Protocol
) -> None:
    _, key = await new_org_key(database)
    async with ApiClient(tight_server, key) as api:
        session_id = await create_session(api)
    async with connected(tight_server, key, protocol) as client:
        for id in ("1", "2", "3"):
            await client.subscribe(id, MESSAGE_ADDED, {"sessionId": session_id})
        refusal = await client.receive()
    assert refusal["type"] == "error"
    assert refusal["id"] == "3"
    assert "Subscription limit reached" in str(refusal["payload"])


# Replay, then live


async def test_replay_then_live_delivers_every_seq_once_in_order(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(100))
    for first in range(101, 601, 100):  # more than one replay page
        await append(api, session_id, 100, first)
    pace = random.Random(7)

    async def writer() -> None:
        for n in range(CONCURRENT_APPENDS):
            await append(api, session_id, 5, 601 + 5 * n)
            await asyncio.sleep(pace.uniform(0, 0.01))

    final = 600 + 5 * CONCURRENT_APPENDS
    async with connected(server, org[1]) as client:
        writing = asyncio.create_task(writer())
        try:
            await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
            received = await seqs_until(client, "1", final)
        finally:
            await writing
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        received += seqs(await client.until_complete("1"))
    assert received == list(range(1, final + 1))


async def test_without_after_seq_only_new_messages_arrive(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(3))
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await append(api, session_id, 2, 4)
        received = await seqs_until(client, "1", 5)
    assert received == [4, 5]


async def test_resuming_after_dropped_connections_misses_and_repeats_nothing(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    rng = random.Random(20240611)
    session_id = await create_session(api)

    async def writer() -> None:
        for first in range(1, RESUME_TOTAL + 1, RESUME_BATCH):
            await append(api, session_id, RESUME_BATCH, first)

    received: list[int] = []
    connections = 0
    writing = asyncio.create_task(writer())
    try:
        while not received or received[-1] < RESUME_TOTAL:
            after = received[-1] if received else 0
            connections += 1
            async with connected(server, org[1]) as client:
                await client.subscribe(
                    "1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": after}
                )
                for _ in range(rng.randint(0, 60)):
                    received.append((await client.data("1"))["messageAdded"]["seq"])
                    if received[-1] == RESUME_TOTAL:
                        break
                if rng.random() < 0.5:
                    client.drop()
    finally:
        await writing
    assert received == list(range(1, RESUME_TOTAL + 1))
    assert connections > 10, "the stream was hardly ever interrupted"


async def test_a_subscriber_that_falls_behind_still_gets_every_message(
    tight_server: str, database: Database
) -> None:
    # The tight server keeps 4 messages per subscriber and publishes each batch of 10 at once.
    _, key = await new_org_key(database)
    async with ApiClient(tight_server, key) as api, connected(tight_server, key) as client:
        session_id = await create_session(api)
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 0})
        await append(api, session_id, 1, 1)
        assert (await client.data("1"))["messageAdded"]["seq"] == 1
        for first in range(2, 52, 10):
            await append(api, session_id, 10, first)
        received = await seqs_until(client, "1", 51)
    assert received == list(range(2, 52))


async def test_a_negative_after_seq_is_bad_user_input(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": -1})
        error = await refusal(client, "1")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "afterSeq = -1" in error["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_that_does_not_validate_gets_a_coded_error(
    server: str, org: tuple[str, str], protocol: Protocol
) -> None:
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("1", "subscription { noSuchField }")
        message = await client.receive()
        # The connection stays usable.
        await client.subscribe("2", "subscription { alsoMissing }")
        second = await client.receive()

    assert message["type"] == "error"
    assert second["type"] == "error"
    errors = message["payload"] if protocol == TRANSPORT_WS else [message["payload"]]
    assert [error["extensions"]["code"] for error in errors] == ["GRAPHQL_VALIDATION_FAILED"]
    assert "noSuchField" in errors[0]["message"]


async def test_a_subscription_that_does_not_parse_closes_graphql_transport_ws_with_4400(
    server: str, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # As graphql-ws's reference server does: a subscribe message it cannot parse.
    caplog.set_level(logging.ERROR)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", "subscription { messageAdded(")
        assert await client.close_code() == 4400

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_subscription_that_does_not_parse_gets_a_coded_error_on_graphql_ws(
    server: str, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with connected(server, org[1], LEGACY_WS) as client:
        await client.subscribe("1", "subscription { messageAdded(")
        message = await client.receive()

    assert message["type"] == "error"
    assert message["payload"]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# Completion


async def test_the_stream_completes_when_the_session_is_completed(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        assert await client.until_complete("1") == []


async def test_the_stream_completes_when_the_session_is_deleted(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await api.data(DELETE_SESSION, {"id": session_id})
        assert await client.until_complete("1") == []


async def test_the_stream_completes_when_the_session_expires(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub, database: Database
) -> None:
    session_id = await create_session(api, expirationSeconds=60)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await append(api, session_id, 1, 1)
        assert (await client.data("1"))["messageAdded"]["seq"] == 1
        # Written behind the server's back: only the change stream tells it.
        soon = utc_now() + timedelta(seconds=1)
        await database.sessions.update_one({"_id": session_id}, {"$set": {"expires_at": soon}})
        assert await client.until_complete("1") == []


async def test_a_completed_session_replays_its_messages_then_completes(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(3))
    await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id, "afterSeq": 1})
        assert seqs(await client.until_complete("1")) == [2, 3]


async def test_a_subscription_from_now_on_to_a_completed_session_completes_at_once(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(2))
    await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        assert await client.until_complete("1") == []


async def test_identical_subscriptions_on_two_connections_each_receive_every_message(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as first, connected(server, org[1]) as second:
        await first.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the first subscription is registered")
        await second.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        # The second may share the first's execution, unseen by the hub: append until it
        # has received something, so it is live too.
        appended = 0
        from_second: list[int] = []
        while not from_second:
            assert appended < IDENTICAL_JOIN_ATTEMPTS, "the second subscription never delivered"
            appended += 1
            await append(api, session_id, 1, appended)
            with contextlib.suppress(AssertionError):
                from_second.append((await second.data("1", 1))["messageAdded"]["seq"])
        await append(api, session_id, 3, appended + 1)
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        from_first = seqs(await first.until_complete("1"))
        from_second += seqs(await second.until_complete("1"))
    final = appended + 3
    assert from_first == list(range(1, final + 1))
    assert from_second == list(range(from_second[0], final + 1))


async def test_messages_appended_before_completion_arrive_before_complete(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        for first in range(1, 31, 10):
            await append(api, session_id, 10, first)
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        assert seqs(await client.until_complete("1")) == list(range(1, 31))


# Not found, and isolation between organizations


async def test_a_missing_session_is_not_found(server: str, org: tuple[str, str]) -> None:
    missing = str(uuid.uuid4())
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": missing})
        error = await refusal(client, "1")
    assert error["extensions"] == {"code": "NOT_FOUND", "id": missing}
    assert missing in error["message"]


async def test_another_orgs_session_is_not_found_like_a_missing_one(
    server: str, org: tuple[str, str], other_api: ApiClient
) -> None:
    theirs = await create_session(other_api, messages=numbered_messages(1))
    missing = str(uuid.uuid4())
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": theirs, "afterSeq": 0})
        for_theirs = await refusal(client, "1")
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": missing, "afterSeq": 0})
        for_missing = await refusal(client, "1")
    assert for_theirs["extensions"]["code"] == "NOT_FOUND"
    assert str(for_theirs) == str(for_missing).replace(missing, theirs)


async def test_session_updated_for_another_orgs_session_is_not_found(
    server: str, org: tuple[str, str], other_api: ApiClient
) -> None:
    theirs = await create_session(other_api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": theirs})
        error = await refusal(client, "1")
    assert error["extensions"] == {"code": "NOT_FOUND", "id": theirs}


async def test_an_org_never_receives_another_orgs_messages(
    server: str, api: ApiClient, database: Database
) -> None:
    ours = await create_session(api)
    _, their_key = await new_org_key(database)
    async with ApiClient(server, their_key) as their_api:
        theirs = await create_session(their_api)
        async with connected(server, their_key) as client:
            await client.subscribe("1", MESSAGE_ADDED, {"sessionId": theirs, "afterSeq": 0})
            for first in range(1, 51, 10):
                await append(api, ours, 10, first)
            await append(their_api, theirs, 1, 1)
            await their_api.data(UPDATE_SESSION, {"id": theirs, "input": {"status": "COMPLETED"}})
            results = await client.until_complete("1")
    assert [r["messageAdded"] for r in results] == [
        {"__typename": "UserMessage", "sessionId": theirs, "seq": 1, "content": "message 1"}
    ]


# sessionUpdated


async def test_session_updated_delivers_name_and_status_changes(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, name="Before")
    async with connected(server, org[1]) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"name": "After"}})
        renamed = await session_update_where(client, "1", lambda s: s["name"] == "After")
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})
        completed = await session_update_where(client, "1", lambda s: s["status"] != "ACTIVE")
    assert renamed == {"id": session_id, "name": "After", "status": "ACTIVE", "messageCount": 0}
    assert completed == {
        "id": session_id,
        "name": "After",
        "status": "COMPLETED",
        "messageCount": 0,
    }


async def test_session_updated_delivers_the_message_count_after_appends(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(2))
    async with connected(server, org[1]) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await append(api, session_id, 3, 3)
        counted = await session_update_where(client, "1", lambda s: s["messageCount"] != 2)
    assert counted["messageCount"] == 5


async def test_session_updated_completes_when_the_session_is_deleted(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": session_id})
        await wait_until(lambda: hub.feed_count == 1, "the subscription is registered")
        await api.data(DELETE_SESSION, {"id": session_id})
        while (message := await client.receive())["type"] != "complete":
            assert message["type"] == "next", message
        assert message["id"] == "1"


# Keep-alives


async def test_the_server_pings_an_idle_graphql_transport_ws_connection(
    tight_server: str, database: Database
) -> None:
    _, key = await new_org_key(database)
    async with connected(tight_server, key, TRANSPORT_WS) as client:
        assert (await client.receive(keep_alive=True))["type"] == "ping"
        await client.send({"type": "pong"})
        assert (await client.receive(keep_alive=True))["type"] == "ping"


async def test_graphql_ws_connections_get_keep_alive_ka(
    tight_server: str, database: Database
) -> None:
    _, key = await new_org_key(database)
    async with connected(tight_server, key, LEGACY_WS) as client:
        assert (await client.receive(keep_alive=True))["type"] == "ka"
        assert (await client.receive(keep_alive=True))["type"] == "ka"
