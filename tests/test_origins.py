"""SESSIONGRAPH_CORS_ORIGINS governs live connections as it governs CORS: a websocket
handshake or an SSE request without `Origin` (a server-side client) is served, so is a
page of a listed origin or of the API's own origin (the /console), and any other page is
refused: the websocket before it is accepted (HTTP 403), SSE with 403 FORBIDDEN."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.exceptions import InvalidStatus

from sessiongraph.settings import Settings
from storage import Database
from tests.keys import new_org_key
from tests.serving import serving
from tests.sse_client import sse
from tests.ws_client import connect

LISTED = "https://app.example"
OTHER = "https://evil.example"
QUERY = "{ sessions(first: 1) { totalCount } }"


@pytest.fixture(scope="module")
async def guarded(settings: Settings, database: Database) -> AsyncIterator[tuple[str, str]]:
    """A server listing one origin, and a key of an organization of its own."""
    _, key = await new_org_key(database)
    async with serving(settings, cors_origins=[LISTED]) as (url, _):
        yield url, key


# "own": the server's own origin (http://127.0.0.1:port), as a page it serves sends.
@pytest.mark.parametrize("origin", [None, LISTED, "own"], ids=["no-origin", "listed", "own"])
async def test_a_websocket_from_an_allowed_origin_is_served(
    guarded: tuple[str, str], origin: str | None
) -> None:
    url, key = guarded
    headers = {} if origin is None else {"Origin": url if origin == "own" else origin}
    async with connect(url, headers=headers) as client:
        ack = await client.init({"authorization": f"Bearer {key}"})
    assert ack["type"] == "connection_ack"


@pytest.mark.parametrize("origin", [OTHER, "null", "http://app.example"])
async def test_a_websocket_from_another_origin_is_refused_with_403(
    guarded: tuple[str, str], origin: str
) -> None:
    url, _ = guarded
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, headers={"Origin": origin}):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [None, LISTED, "own"], ids=["no-origin", "listed", "own"])
async def test_sse_from_an_allowed_origin_is_served(
    guarded: tuple[str, str], origin: str | None
) -> None:
    url, key = guarded
    headers = {} if origin is None else {"Origin": url if origin == "own" else origin}
    async with sse(url, key, QUERY, headers=headers) as reader:
        assert reader.response.status_code == 200
        [result] = await reader.results()
    assert result["data"]["sessions"]["totalCount"] == 0


async def test_sse_from_another_origin_is_refused_with_403_forbidden(
    guarded: tuple[str, str],
) -> None:
    url, key = guarded
    async with sse(url, key, QUERY, headers={"Origin": OTHER}) as reader:
        await reader.response.aread()
        response = reader.response
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert OTHER in error["message"]
    assert "SESSIONGRAPH_CORS_ORIGINS" in error["message"]
