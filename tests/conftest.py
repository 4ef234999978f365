"""Test fixtures: a real database over TCP and a real server over HTTP.

Without MONGODB_URI the suite starts its own SecantusDB (in memory, on a free port, with
test commands enabled); with MONGODB_URI it uses that server, in a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from selenium import webdriver
from starlette.applications import Starlette

from sessiongraph.app import create_app
from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.browser import chromium
from tests.keys import new_org_key
from tests.serving import bound_socket, serve


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A MongoDB wire-protocol server for the whole run."""
    given = os.environ.get("MONGODB_URI")
    if given:
        yield given
        return
    server = EmbeddedDatabase(data_dir=None, extra_args=("--enable-test-commands",))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def db_name() -> str:
    return f"sessiongraph_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def listening_socket() -> Iterator[socket.socket]:
    """The server's socket, bound now so no other process can take the port meanwhile."""
    sock = bound_socket()
    yield sock
    sock.close()


@pytest.fixture(scope="session")
def settings(mongo_uri: str, db_name: str, listening_socket: socket.socket) -> Settings:
    return Settings(
        mongodb_uri=mongo_uri,
        db_name=db_name,
        auth_cache_seconds=0,
        # The suite hammers the API with one key; rate limits have tests of their own.
        rate_limit_per_second=0,
        port=listening_socket.getsockname()[1],
        db_timeout_ms=5000,
        token_secret=SecretStr(secrets.token_urlsafe(32)),
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    """A direct connection, for arranging state and checking what was stored."""
    assert settings.mongodb_uri is not None
    db = await Database.connect(settings.mongodb_uri, settings.db_name)
    await db.ensure_indexes()
    yield db
    await db.client.drop_database(settings.db_name)
    await db.close()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Starlette:
    """The app under test; once `server` has started, `app.state.services` is live."""
    return create_app(settings)


@pytest.fixture(scope="session")
async def server(
    app: Starlette, settings: Settings, database: Database, listening_socket: socket.socket
) -> AsyncIterator[str]:
    """The app served by uvicorn on a free port; yields its base URL."""
    async with serve(app, listening_socket) as url:
        yield url


@pytest.fixture
async def org(database: Database) -> tuple[str, str]:
    """(org_id, key) of an organization of its own for this test."""
    return await new_org_key(database)


@pytest.fixture
async def api(server: str, org: tuple[str, str]) -> AsyncIterator[ApiClient]:
    """A client of the running server, authenticated as this test's organization."""
    async with ApiClient(server, org[1]) as client:
        yield client


@pytest.fixture
async def other_api(server: str, database: Database) -> AsyncIterator[ApiClient]:
    """A client of a second, unrelated organization."""
    _, key = await new_org_key(database)
    async with ApiClient(server, key) as client:
        yield client


@pytest.fixture
def cli_env(mongo_uri: str, settings: Settings) -> dict[str, str]:
    """The environment of a user pointing the command at the test database."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SESSIONGRAPH_") and name != "MONGODB_URI"
    }
    env["MONGODB_URI"] = mongo_uri
    env["SESSIONGRAPH_DB_NAME"] = settings.db_name
    return env


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """A headless Chromium of its own (fresh profile, so fresh storage) for one test."""
    # The driver is given explicitly; selenium-manager must never try to download one.
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # Every test shares the session's event loop, where the server runs.
    for item in items:
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))
