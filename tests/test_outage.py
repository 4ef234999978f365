"""The database goes away and comes back: requests fail fast with SERVICE_UNAVAILABLE,
readiness says so, and the server recovers without a restart. See tests/faults.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import ApiKeyStore, Database
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.faults import (
    OUTAGE_TIMEOUT_MS,
    SESSION_NAME,
    UNAVAILABLE,
    answered_within,
    append,
    eventually_ok,
)
from tests.keys import new_org_key
from tests.serving import serving

# The database goes away, and comes back.


@dataclass
class Outage:
    """A server whose database was stopped after a session was created and `key` was used
    (so the server has it cached); `fresh_key` belongs to the same organization but was
    never used."""

    url: str
    key: str
    fresh_key: str
    session_id: str
    database: EmbeddedDatabase


@pytest.fixture(scope="module")
async def outage(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Outage]:
    # A data folder, so that the database can come back with its data; the port is chosen
    # once, so that it comes back where the server looks for it.
    database = EmbeddedDatabase(data_dir=tmp_path_factory.mktemp("outage") / "secantus")
    await database.start_async()
    try:
        db = await Database.connect(database.uri, settings.db_name)
        try:
            org_id, key = await new_org_key(db)
            _, fresh_key = await ApiKeyStore(db).create(org_id, "never used")
        finally:
            await db.close()
        async with serving(
            settings,
            mongodb_uri=database.uri,
            db_timeout_ms=OUTAGE_TIMEOUT_MS,
            auth_cache_seconds=3600,
        ) as (url, _):
            async with ApiClient(url, key) as api:
                session_id = await create_session(api, name="before the outage")
            await database.stop_async()
            yield Outage(url, key, fresh_key, session_id, database)
    finally:
        await database.stop_async()


@pytest.fixture
async def outage_api(outage: Outage) -> AsyncIterator[ApiClient]:
    async with ApiClient(outage.url, outage.key) as client:
        yield client


@pytest.fixture
async def database_back(outage: Outage) -> AsyncIterator[Outage]:
    """The outage's database started again on the same data folder and port (and stopped
    again afterwards, for the other tests of the outage)."""
    await outage.database.start_async()
    try:
        yield outage
    finally:
        await outage.database.stop_async()


async def test_a_query_while_the_database_is_down_fails_with_service_unavailable(
    outage: Outage, outage_api: ApiClient
) -> None:
    async with answered_within():
        error = await outage_api.error(SESSION_NAME, {"id": outage.session_id})

    assert error["extensions"]["code"] == UNAVAILABLE
    assert error["message"] == "The database is unavailable; try again shortly."


async def test_an_append_while_the_database_is_down_fails_with_service_unavailable(
    outage: Outage, outage_api: ApiClient
) -> None:
    # The driver's own transaction helper would retry this for two minutes.
    async with answered_within():
        body = await append(outage_api, outage.session_id, "hello?")

    assert [error["extensions"]["code"] for error in body["errors"]] == [UNAVAILABLE]
    assert body["data"] is None


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_response_holding_only_service_unavailable_has_status_503_and_retry_after(
    outage: Outage, outage_api: ApiClient, accept: str
) -> None:
    async with answered_within():
        response = await outage_api.post(
            SESSION_NAME, {"id": outage.session_id}, headers={"Accept": accept}
        )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == accept
    assert response.json()["data"] == {"session": None}


async def test_an_unknown_key_while_the_database_is_down_gets_http_503(outage: Outage) -> None:
    async with ApiClient(outage.url, outage.fresh_key) as api, answered_within():
        response = await api.post(SESSION_NAME, {"id": outage.session_id})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["errors"][0]["extensions"]["code"] == UNAVAILABLE


async def test_readiness_reports_a_database_that_is_down(outage: Outage) -> None:
    async with httpx.AsyncClient(base_url=outage.url) as http, answered_within():
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["database"].startswith("unreachable")


async def test_queries_succeed_again_once_the_database_is_back_without_a_server_restart(
    database_back: Outage, outage_api: ApiClient
) -> None:
    response = await eventually_ok(
        lambda: outage_api.post(SESSION_NAME, {"id": database_back.session_id}),
        "a query after the database came back",
    )

    assert response.json() == {"data": {"session": {"name": "before the outage"}}}


async def test_readiness_recovers_once_the_database_is_back(database_back: Outage) -> None:
    async with httpx.AsyncClient(base_url=database_back.url) as http:
        response = await eventually_ok(lambda: http.get("/readyz"), "/readyz")

    assert response.json()["ready"] is True
