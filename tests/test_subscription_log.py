"""One log line when a subscription starts and one when it stops, with who and what it was,
and at the stop why, for how long and how many results it delivered."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import pytest

from sessiongraph.log_config import JsonFormatter
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.log_records import extra, extras
from tests.ws_client import PROTOCOLS, WAIT_SECONDS, Protocol, connected

LOGGER = "sessiongraph.subscriptions"

MESSAGE_ADDED = """
subscription LoggedWatch($sessionId: ID!) { messageAdded(sessionId: $sessionId) { seq } }
"""
SESSION_UPDATED = "subscription LoggedSession($id: ID!) { sessionUpdated(id: $id) { name } }"
INVALID = "subscription LoggedInvalid($id: ID!) { sessionUpdated(id: $id) { noSuchField } }"
ADD_MESSAGE = """
mutation ($sessionId: ID!) {
  addMessages(sessionId: $sessionId, messages: [{user: {content: "hi"}}]) { seq }
}
"""
DELETE_SESSION = "mutation ($id: ID!) { deleteSession(id: $id) { id } }"


def lines(caplog: pytest.LogCaptureFixture, session_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and getattr(r, "session_id", None) == session_id
    ]


async def until_lines(
    caplog: pytest.LogCaptureFixture, session_id: str, count: int
) -> list[logging.LogRecord]:
    """The subscription log lines about `session_id`, once there are `count` of them."""
    deadline = time.monotonic() + WAIT_SECONDS
    while len(found := lines(caplog, session_id)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} subscription log lines, expected {count}")
        await asyncio.sleep(0.02)
    assert len(found) == count, [r.getMessage() for r in found]
    return found


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_logs_its_start_and_its_stop_by_the_client(
    server: str,
    api: ApiClient,
    org: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    protocol: Protocol,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    session_id = await create_session(api, name="logged")
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("watch-1", MESSAGE_ADDED, {"sessionId": session_id})
        await until_lines(caplog, session_id, 1)
        for _ in range(2):
            await api.data(ADD_MESSAGE, {"sessionId": session_id})
        await client.data("watch-1")
        await client.data("watch-1")
        await client.complete("watch-1")
        start, stop = await until_lines(caplog, session_id, 2)

    shared: dict[str, Any] = {
        "subscription_id": "watch-1",
        "operation": "LoggedWatch",
        "field": "messageAdded",
        "session_id": session_id,
        "org_id": org[0],
        "protocol": protocol,
    }
    assert start.__dict__.items() >= shared.items()
    assert (
        stop.__dict__.items() >= {**shared, "reason": "client_stop", "events_delivered": 2}.items()
    )
    assert extra(start, "connection_id") == extra(stop, "connection_id")
    assert len(extra(start, "connection_id")) == 32
    assert extra(stop, "duration_ms") >= 0
    assert "reason" not in start.__dict__


async def test_the_stop_line_says_complete_when_the_stream_ends(
    server: str, api: ApiClient, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    session_id = await create_session(api, name="logged")
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await until_lines(caplog, session_id, 1)
        await api.data(DELETE_SESSION, {"id": session_id})
        assert await client.until_complete("1") == []
        _, stop = await until_lines(caplog, session_id, 2)

    assert extras(stop, "reason", "events_delivered") == ("complete", 0)


async def test_the_stop_line_names_the_error_that_ended_it(
    server: str, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    missing = str(uuid.uuid4())
    async with connected(server, org[1]) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": missing})
        await client.receive()
        _, stop = await until_lines(caplog, missing, 2)

    assert extras(stop, "field", "reason", "events_delivered") == ("sessionUpdated", "NOT_FOUND", 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscription_that_does_not_validate_stops_with_validation_failed(
    server: str, org: tuple[str, str], caplog: pytest.LogCaptureFixture, protocol: Protocol
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    session_id = str(uuid.uuid4())
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("1", INVALID, {"id": session_id})
        assert (await client.receive())["type"] == "error"
        _, stop = await until_lines(caplog, session_id, 2)

    assert extras(stop, "operation", "reason") == ("LoggedInvalid", "GRAPHQL_VALIDATION_FAILED")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_lost_connection_stops_its_subscriptions_with_reason_disconnect(
    server: str,
    api: ApiClient,
    org: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    protocol: Protocol,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    session_id = await create_session(api, name="logged")
    async with connected(server, org[1], protocol) as client:
        await client.subscribe("1", SESSION_UPDATED, {"id": session_id})
        await until_lines(caplog, session_id, 1)
        client.drop()
    _, stop = await until_lines(caplog, session_id, 2)

    assert extras(stop, "operation", "reason") == ("LoggedSession", "disconnect")


async def test_the_lines_render_as_json_with_their_fields(
    server: str, api: ApiClient, org: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    session_id = await create_session(api, name="logged")
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await until_lines(caplog, session_id, 1)
    _, stop = await until_lines(caplog, session_id, 2)

    entry = json.loads(JsonFormatter().format(stop))
    assert entry["logger"] == LOGGER
    assert entry["level"] == "INFO"
    assert entry["session_id"] == session_id
    assert entry["org_id"] == org[0]
    assert entry["reason"] == "disconnect"
    assert {"connection_id", "operation", "duration_ms", "events_delivered"} <= entry.keys()
