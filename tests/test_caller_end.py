"""A caller's live connections end with its credential: at an access token's expiry (a
websocket closes with 4403, an SSE stream ends), and when the API key behind it is revoked
(every socket and stream of the key and of the tokens minted from it, within the auth-cache
window), whichever process it is open on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from sessiongraph.settings import Settings
from storage import ApiKeyStore, Database
from tests.api_client import ApiClient
from tests.keys import key_id_of, new_org_key, signer
from tests.operations import CREATE_ACCESS_TOKEN, CREATE_SESSION_ID
from tests.serving import serving
from tests.sse_client import sse
from tests.ws_client import PROTOCOLS, Protocol, connected, wait_until

WATCH = "subscription ($id: ID!) { messageAdded(sessionId: $id) { seq } }"
TOKEN_SECONDS = 2
CREDENTIAL_ENDED = 4403


def short_token(settings: Settings, org_id: str, key_id: str) -> str:
    """A real access token of `key_id` that expires within TOKEN_SECONDS (minted with the
    server's secret: the API itself refuses lifetimes under 5 s)."""
    token, _ = signer(settings).mint(
        org_id, key_id, ttl_seconds=TOKEN_SECONDS, read_only=True, session_ids=None
    )
    return token


@pytest.fixture
async def watched(
    settings: Settings, database: Database
) -> AsyncIterator[tuple[str, Starlette, str, str, str]]:
    """A server that re-checks keys every second: its URL, app, an org, its key and one
    of its sessions."""
    org_id, key = await new_org_key(database)
    async with serving(settings, auth_cache_seconds=1) as (url, app):
        async with ApiClient(url, key) as api:
            created = await api.data(CREATE_SESSION_ID, {"input": {}})
        yield url, app, org_id, key, created["createSession"]["id"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_opened_with_a_token_closes_with_4403_at_its_expiry(
    watched: tuple[str, Starlette, str, str, str], database: Database, settings: Settings,
    protocol: Protocol,
) -> None:  # fmt: skip
    url, app, org_id, _, session_id = watched
    token = short_token(settings, org_id, await key_id_of(database, org_id))
    started = time.monotonic()
    async with connected(url, token, protocol) as client:
        await client.subscribe("1", WATCH, {"id": session_id})
        assert await client.close_code() == CREDENTIAL_ENDED
    assert time.monotonic() - started < TOKEN_SECONDS + 2
    await wait_until(
        lambda: not app.state.parts.live.tracker.subscriptions, "the subscription stopped"
    )


async def test_an_event_stream_with_a_token_in_its_url_ends_at_the_tokens_expiry(
    watched: tuple[str, Starlette, str, str, str], database: Database, settings: Settings
) -> None:
    url, app, org_id, _, session_id = watched
    token = short_token(settings, org_id, await key_id_of(database, org_id))
    started = time.monotonic()
    async with sse(url, None, WATCH, {"id": session_id}, method="GET", access_token=token) as r:
        assert r.response.status_code == 200
        events = await r.ended()
    assert [e for e in events if not e.comment] == []
    assert time.monotonic() - started < TOKEN_SECONDS + 2
    await wait_until(lambda: not app.state.parts.live.tracker.connections, "the stream is gone")


async def test_an_api_key_is_refused_in_an_event_streams_url(
    watched: tuple[str, Starlette, str, str, str],
) -> None:
    url, _, _, key, session_id = watched
    async with sse(url, None, WATCH, {"id": session_id}, method="GET", access_token=key) as r:
        assert r.response.status_code == 401
        body = (await r.response.aread()).decode()
    assert '"UNAUTHENTICATED"' in body
    assert key not in body


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_revoking_a_key_closes_its_sockets_and_streams_and_its_tokens(
    watched: tuple[str, Starlette, str, str, str], database: Database, settings: Settings,
    protocol: Protocol,
) -> None:  # fmt: skip
    url, _, org_id, key, session_id = watched
    key_id = await key_id_of(database, org_id)
    async with ApiClient(url, key) as api:
        minted = await api.data(CREATE_ACCESS_TOKEN, {"input": {"ttlSeconds": 600}})
    token = minted["createAccessToken"]["token"]
    _, other_key = await new_org_key(database)
    async with (
        connected(url, key, protocol) as by_key,
        connected(url, token, protocol) as by_token,
        connected(url, other_key, protocol) as other,
        sse(url, None, WATCH, {"id": session_id}, method="GET", access_token=token) as stream,
    ):
        await by_key.subscribe("1", WATCH, {"id": session_id})
        await by_token.subscribe("1", WATCH, {"id": session_id})
        assert stream.response.status_code == 200
        await ApiKeyStore(database).revoke(key_id)
        revoked = time.monotonic()

        assert await by_key.close_code() == CREDENTIAL_ENDED
        assert await by_token.close_code() == CREDENTIAL_ENDED
        assert [e for e in await stream.ended() if not e.comment] == []
        assert time.monotonic() - revoked < 4, "open sockets outlived their revoked key"
        await other.subscribe("1", "{ __typename }")
        assert (await other.receive())["payload"] == {"data": {"__typename": "Query"}}


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
        count = await app.state.parts.live.end_where(
            lambda c: c.org_id == ended_org, "Key revoked."
        )

        assert count == 1
        assert await ended.close_code() == CREDENTIAL_ENDED
        await kept.subscribe("1", "{ __typename }")
        assert (await kept.receive())["payload"] == {"data": {"__typename": "Query"}}
