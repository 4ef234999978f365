"""GraphQL over SSE on /graphql (graphql-sse, distinct connections mode): POST runs any
operation, GET runs subscriptions; events carry the message seq as their id and
Last-Event-ID resumes after it; refusals before the start answer as the JSON path does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from starlette.applications import Starlette

from sessiongraph.settings import Settings
from storage import Database
from storage.clock import utc_now
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.factories import create_session, numbered_messages
from tests.keys import new_org_key
from tests.log_records import extras
from tests.operations import DELETE_SESSION, UPDATE_SESSION
from tests.serving import serving
from tests.sse_client import EventReader, sse
from tests.ws_client import wait_until

MESSAGE_ADDED = """
subscription Watch($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { seq content }
}
"""
ONLY_CONTENT = """
subscription WatchContent($sessionId: ID!) { messageAdded(sessionId: $sessionId) { content } }
"""
SESSION_UPDATED = "subscription Updated($id: ID!) { sessionUpdated(id: $id) { name } }"
ADD_MESSAGES = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""
SESSION_NAME = "query Name($id: ID!) { session(id: $id) { name } }"
CREATE_NAMED = 'mutation { createSession(input: {name: "over sse"}) { name } }'
LOGGER = "sessiongraph.subscriptions"


async def append(api: ApiClient, session_id: str, count: int, first: int) -> None:
    await api.data(
        ADD_MESSAGES, {"sessionId": session_id, "messages": numbered_messages(count, first)}
    )


async def complete(api: ApiClient, session_id: str) -> None:
    await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})


async def seqs_with_ids(reader: EventReader, count: int) -> list[tuple[str | None, int]]:
    """The event id and the seq of the next `count` results."""
    found = []
    for _ in range(count):
        event = await reader.next()
        assert event.event == "next", event
        found.append((event.id, event.json()["data"]["messageAdded"]["seq"]))
    return found


@pytest.fixture
async def hub(app: Starlette, server: str) -> EventHub:
    events: EventHub = app.state.services.events
    await wait_until(lambda: events.feed_count == 0, "earlier subscriptions are released")
    return events


# Subscriptions: replay, live, resume, completion


async def test_post_replays_then_streams_live_with_the_seq_as_event_id(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(3))
    variables = {"sessionId": session_id, "afterSeq": 0}
    async with sse(server, org[1], MESSAGE_ADDED, variables) as reader:
        assert reader.response.status_code == 200
        assert await seqs_with_ids(reader, 3) == [("1", 1), ("2", 2), ("3", 3)]
        await append(api, session_id, 2, 4)
        assert await seqs_with_ids(reader, 2) == [("4", 4), ("5", 5)]
        await complete(api, session_id)
        assert await reader.results() == []
        assert await reader.ended() == []


async def test_get_runs_a_subscription_from_the_query_string(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(2))
    variables = {"sessionId": session_id, "afterSeq": 1}
    async with sse(server, org[1], MESSAGE_ADDED, variables, method="GET") as reader:
        assert reader.response.status_code == 200
        assert await seqs_with_ids(reader, 1) == [("2", 2)]
        await complete(api, session_id)
        assert await reader.results() == []


async def test_last_event_id_resumes_after_that_seq_losing_and_repeating_nothing(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(5))
    variables = {"sessionId": session_id}
    async with sse(server, org[1], MESSAGE_ADDED, variables, method="GET") as first:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        await append(api, session_id, 2, 6)
        assert await seqs_with_ids(first, 2) == [("6", 6), ("7", 7)]
    # Appended while no stream was open: the reconnect must replay them, once.
    await append(api, session_id, 2, 8)
    headers = {"Last-Event-ID": "7"}
    async with sse(
        server, org[1], MESSAGE_ADDED, variables, method="GET", headers=headers
    ) as again:
        assert await seqs_with_ids(again, 2) == [("8", 8), ("9", 9)]
        await append(api, session_id, 1, 10)
        assert await seqs_with_ids(again, 1) == [("10", 10)]


async def test_last_event_id_overrides_after_seq_as_a_reconnect_needs(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=numbered_messages(4))
    await complete(api, session_id)
    variables = {"sessionId": session_id, "afterSeq": 0}
    async with sse(server, org[1], MESSAGE_ADDED, variables, headers={"Last-Event-ID": "2"}) as r:
        results = await r.results()

    assert [result["data"]["messageAdded"]["seq"] for result in results] == [3, 4]


async def test_events_carry_the_seq_even_when_it_is_not_selected(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with sse(server, org[1], ONLY_CONTENT, {"sessionId": session_id}) as reader:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        await append(api, session_id, 1, 1)
        event = await reader.next()

    assert (event.id, event.json()) == ("1", {"data": {"messageAdded": {"content": "message 1"}}})


async def test_the_stream_completes_when_the_session_is_deleted(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        await api.data(DELETE_SESSION, {"id": session_id})
        assert await reader.results() == []


async def test_the_stream_completes_when_the_session_expires(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub, database: Database
) -> None:
    session_id = await create_session(api, expirationSeconds=60)
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        soon = utc_now() + timedelta(seconds=1)
        await database.sessions.update_one({"_id": session_id}, {"$set": {"expires_at": soon}})
        assert await reader.results() == []


async def test_session_updated_streams_changes_without_event_ids(
    server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with sse(server, org[1], SESSION_UPDATED, {"id": session_id}, method="GET") as reader:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        await api.data(UPDATE_SESSION, {"id": session_id, "input": {"name": "renamed"}})
        while (event := await reader.next()).json()["data"]["sessionUpdated"]["name"] != "renamed":
            pass
    assert event.id is None


# Queries and mutations


async def test_a_query_over_post_gives_one_next_then_complete(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, name="queried")
    async with sse(server, org[1], SESSION_NAME, {"id": session_id}) as reader:
        assert await reader.results() == [{"data": {"session": {"name": "queried"}}}]


async def test_a_mutation_over_post_gives_one_next_then_complete(
    server: str, org: tuple[str, str]
) -> None:
    async with sse(server, org[1], CREATE_NAMED) as reader:
        assert await reader.results() == [{"data": {"createSession": {"name": "over sse"}}}]


async def test_a_mutation_over_get_is_refused_with_405(server: str, org: tuple[str, str]) -> None:
    async with sse(server, org[1], CREATE_NAMED, method="GET") as reader:
        body = await reader.response.aread()
        assert reader.response.status_code == 405
    assert b"METHOD_NOT_ALLOWED" in body


async def test_a_query_over_get_is_refused_with_a_coded_error(
    server: str, org: tuple[str, str]
) -> None:
    async with sse(server, org[1], "{ sessions { totalCount } }", method="GET") as reader:
        await reader.response.aread()
        assert reader.response.status_code == 400
        assert reader.response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# Refusals, as the JSON path answers them


async def test_no_key_gets_401_unauthenticated(server: str) -> None:
    async with sse(server, None, MESSAGE_ADDED, {"sessionId": "x"}) as reader:
        await reader.response.aread()
        response = reader.response
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_document_that_does_not_validate_gets_400(
    server: str, org: tuple[str, str]
) -> None:
    query = 'subscription Invalid { messageAdded(sessionId: "x") { noSuchField } }'
    async with sse(server, org[1], query) as reader:
        await reader.response.aread()
        response = reader.response
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "noSuchField" in error["message"]


async def test_a_document_over_the_cost_limit_gets_400_too_complex(
    server: str, org: tuple[str, str]
) -> None:
    query = "{ sessions(first: 100) { nodes { messages(first: 100) { nodes { content } } } } }"
    async with sse(server, org[1], query.replace("100", "1000")) as reader:
        await reader.response.aread()
        response = reader.response
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_a_body_that_is_not_json_gets_400_and_a_wrong_content_type_415(
    server: str, org: tuple[str, str]
) -> None:
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {org[1]}"}
    async with ApiClient(server, None) as client:
        not_json = await client.http.post(
            "/graphql", content=b"{", headers={**headers, "Content-Type": "application/json"}
        )
        form = await client.http.post(
            "/graphql", content=b"query=x", headers={**headers, "Content-Type": "text/plain"}
        )
    assert (not_json.status_code, form.status_code) == (400, 415)
    assert form.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_last_event_id_that_is_not_a_seq_gets_400(
    server: str, org: tuple[str, str]
) -> None:
    headers = {"Last-Event-ID": "abc"}
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": "x"}, headers=headers) as reader:
        await reader.response.aread()
        response = reader.response
    assert response.status_code == 400
    assert "Last-Event-ID 'abc'" in response.json()["errors"][0]["message"]


async def test_another_orgs_session_is_not_found(
    server: str, other_api: ApiClient, org: tuple[str, str]
) -> None:
    theirs = await create_session(other_api, messages=numbered_messages(1))
    variables = {"sessionId": theirs, "afterSeq": 0}
    async with sse(server, org[1], MESSAGE_ADDED, variables) as reader:
        [result] = await reader.results()

    assert result["data"] is None
    assert result["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "message 1" not in str(result)


# The response itself


async def test_the_response_is_uncached_unbuffered_and_carries_a_request_id(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api)
    await complete(api, session_id)
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        headers = reader.response.headers
        await reader.results()
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert len(headers["x-request-id"]) == 32


@pytest.fixture(scope="module")
async def quick(settings: Settings, database: Database) -> AsyncIterator[tuple[str, Starlette]]:
    """A server of its own with fast keep-alives."""
    async with serving(settings, ws_keep_alive_seconds=0.2) as served:
        yield served


async def test_an_idle_stream_gets_keep_alive_comments(
    quick: tuple[str, Starlette], database: Database
) -> None:
    url, _ = quick
    _, key = await new_org_key(database)
    async with ApiClient(url, key) as api:
        session_id = await create_session(api)
    async with sse(url, key, MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        first = await reader.next(comments=True)
        second = await reader.next(comments=True)
    assert first.comment
    assert second.comment


async def test_streams_count_and_log_like_websocket_subscriptions(
    server: str, api: ApiClient, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger=LOGGER)
    session_id = await create_session(api)
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        await append(api, session_id, 1, 1)
        await reader.next()
        await complete(api, session_id)
        await reader.results()
    await wait_until(
        lambda: any(getattr(r, "reason", None) for r in caplog.records if r.name == LOGGER),
        "the stop line is logged",
    )
    lines = [r for r in caplog.records if getattr(r, "session_id", None) == session_id]
    start, stop = lines
    assert extras(start, "protocol", "operation", "org_id") == ("sse", "Watch", org[0])
    assert extras(stop, "reason", "events_delivered") == ("complete", 1)


# Leaks


async def test_clients_that_go_away_leave_no_feeds_streams_or_tasks(
    app: Starlette, server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api, messages=numbered_messages(2))
    baseline = len(asyncio.all_tasks())
    tracker = app.state.parts.live.tracker
    connections = len(tracker.connections)
    for round in range(20):
        variables = {"sessionId": session_id, "afterSeq": 0 if round % 2 else None}
        async with sse(server, org[1], MESSAGE_ADDED, variables) as reader:
            await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
            if round % 2:
                await reader.next()
        # Left without reading to the end: the client closed the connection.
    await wait_until(lambda: hub.feed_count == 0, "every feed is released")
    await wait_until(lambda: len(tracker.connections) == connections, "every stream is gone")
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline, "the tasks are back")
    assert not [s for s in tracker.subscriptions if s.connection.protocol == "sse"]


async def test_ending_a_callers_streams_closes_them(
    app: Starlette, server: str, api: ApiClient, org: tuple[str, str], hub: EventHub
) -> None:
    session_id = await create_session(api)
    async with sse(server, org[1], MESSAGE_ADDED, {"sessionId": session_id}) as reader:
        await wait_until(lambda: hub.feed_count == 1, "the stream is subscribed")
        ended = await app.state.parts.live.end_where(
            lambda caller: caller.org_id == org[0], "revoked"
        )
        events = await reader.ended()
    assert ended == 1
    assert [e for e in events if not e.comment] == []  # no `complete`: a client retries
