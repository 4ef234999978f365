"""A caller's live connections end with its credential: at its expiry (a websocket closes
with 4403, an SSE stream ends) and whenever the engine is told to end a caller's
connections (`LiveEngine.end_where`, which key revocation will use).

API keys never expire, so the expiring caller is made here by giving the verifier's
callers an `expires_at`, as access tokens will."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from starlette.applications import Starlette

from sessiongraph.auth import Caller
from sessiongraph.settings import Settings
from storage import Database
from storage.clock import utc_now
from tests.api_client import ApiClient
from tests.conftest import new_org_key
from tests.operations import CREATE_SESSION_ID
from tests.sse_client import sse
from tests.ws_client import PROTOCOLS, Protocol, connected, serving, wait_until

WATCH = "subscription ($id: ID!) { messageAdded(sessionId: $id) { seq } }"
LIFETIME_SECONDS = 1.0
CREDENTIAL_EXPIRED = 4403


@pytest.fixture
async def expiring(
    settings: Settings, database: Database
) -> AsyncIterator[tuple[str, Starlette, str, str]]:
    """A server whose callers' credentials expire LIFETIME_SECONDS after they are verified;
    its URL, app, a key and a session of that key's organization."""
    _, key = await new_org_key(database)
    async with serving(settings) as (url, app):
        async with ApiClient(url, key) as api:
            created = await api.data(CREATE_SESSION_ID, {"input": {}})
        verifier = app.state.services.verifier
        verified = verifier.caller_of

        async def caller_of(key: str | None) -> Caller | None:
            caller = await verified(key)
            if caller is None:
                return None
            return replace(caller, expires_at=utc_now() + timedelta(seconds=LIFETIME_SECONDS))

        verifier.caller_of = caller_of
        yield url, app, key, created["createSession"]["id"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_is_closed_with_4403_when_its_credential_expires(
    expiring: tuple[str, Starlette, str, str], protocol: Protocol
) -> None:
    url, app, key, session_id = expiring
    started = time.monotonic()
    async with connected(url, key, protocol) as client:
        await client.subscribe("1", WATCH, {"id": session_id})
        assert await client.close_code() == CREDENTIAL_EXPIRED
    assert time.monotonic() - started >= LIFETIME_SECONDS * 0.9
    await wait_until(lambda: not app.state.subscriptions.subscriptions, "the subscription stopped")


async def test_an_sse_stream_ends_when_its_credential_expires(
    expiring: tuple[str, Starlette, str, str],
) -> None:
    url, app, key, session_id = expiring
    started = time.monotonic()
    async with sse(url, key, WATCH, {"id": session_id}) as reader:
        events = await reader.ended()
    assert [e for e in events if not e.comment] == []
    assert time.monotonic() - started >= LIFETIME_SECONDS * 0.9
    await wait_until(lambda: not app.state.subscriptions.connections, "the stream is gone")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ending_a_callers_connections_closes_its_websockets_with_4403_and_no_others(
    app: Starlette, server: str, database: Database, protocol: Protocol
) -> None:
    ended_org, ended_key = await new_org_key(database)
    _, kept_key = await new_org_key(database)
    async with (
        connected(server, ended_key, protocol) as ended,
        connected(server, kept_key, protocol) as kept,
    ):
        count = await app.state.live.end_where(lambda c: c.org_id == ended_org, "Key revoked.")

        assert count == 1
        assert await ended.close_code() == CREDENTIAL_EXPIRED
        await kept.subscribe("1", "{ __typename }")
        assert (await kept.receive())["payload"] == {"data": {"__typename": "Query"}}
