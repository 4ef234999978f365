"""The `make run` path: with no MONGODB_URI the app runs SecantusDB itself.

Each test starts the app as `make run` does, on its own data folder and ports, and stops it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sessiongraph.app import create_app
from sessiongraph.embedded import EmbeddedDatabaseError, free_port, port_answers
from sessiongraph.settings import Settings
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION_ID, GET_SESSION
from tests.serving import serve


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Settings as `make run` has them, but in this test's folder and on free ports."""
    return Settings(
        mongodb_uri=None,
        embedded_data_dir=tmp_path / "secantus",
        embedded_port=free_port(),
        dev_key_file=tmp_path / "dev-api-key",
        port=free_port(),
    )


@asynccontextmanager
async def serving_settings(settings: Settings) -> AsyncIterator[str]:
    """The app for `settings`, served on `settings.port`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    async with serve(create_app(settings), sock) as url:
        yield url


def development_key(settings: Settings) -> str:
    return settings.dev_key_file.read_text().strip()


async def test_startup_prints_the_graphiql_url_and_a_development_key(
    embedded_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving_settings(embedded_settings) as url:
        printed = capsys.readouterr().out

    assert f"{url}/graphql" in printed
    assert f"Development key: {development_key(embedded_settings)}" in printed
    assert f"{url}/console" in printed


async def test_the_development_key_is_kept_readable_by_its_owner_only(
    embedded_settings: Settings,
) -> None:
    async with serving_settings(embedded_settings):
        pass

    assert embedded_settings.dev_key_file.stat().st_mode & 0o777 == 0o600


async def test_the_development_key_creates_sessions(embedded_settings: Settings) -> None:
    async with (
        serving_settings(embedded_settings) as url,
        ApiClient(url, development_key(embedded_settings)) as api,
    ):
        created = await api.data(CREATE_SESSION_ID, {"input": {"name": "first run"}})

    assert created["createSession"]["id"]


async def test_stopping_the_server_stops_the_database(embedded_settings: Settings) -> None:
    async with serving_settings(embedded_settings):
        assert port_answers("127.0.0.1", embedded_settings.embedded_port)

    assert not port_answers("127.0.0.1", embedded_settings.embedded_port)


async def test_a_restart_on_the_same_data_folder_keeps_the_sessions(
    embedded_settings: Settings,
) -> None:
    async with (
        serving_settings(embedded_settings) as url,
        ApiClient(url, development_key(embedded_settings)) as api,
    ):
        created = await api.data(CREATE_SESSION_ID, {"input": {"name": "kept"}})
    session_id = created["createSession"]["id"]

    async with (
        serving_settings(embedded_settings) as url,
        ApiClient(url, development_key(embedded_settings)) as api,
    ):
        fetched = await api.data(GET_SESSION, {"id": session_id})

    assert fetched["session"]["id"] == session_id
    assert fetched["session"]["name"] == "kept"


async def test_a_restart_reuses_the_development_key(
    embedded_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving_settings(embedded_settings):
        first = development_key(embedded_settings)
    capsys.readouterr()

    async with serving_settings(embedded_settings):
        printed = capsys.readouterr().out

    assert development_key(embedded_settings) == first
    assert f"Development key: {first}" in printed


async def test_a_development_key_that_no_longer_works_is_replaced(
    embedded_settings: Settings,
) -> None:
    embedded_settings.dev_key_file.write_text("sg_a-key-this-database-never-issued\n")

    async with serving_settings(embedded_settings) as url:
        key = development_key(embedded_settings)
        async with ApiClient(url, key) as api:
            created = await api.data(CREATE_SESSION_ID, {"input": {}})

    assert key != "sg_a-key-this-database-never-issued"
    assert created["createSession"]["id"]


async def test_startup_fails_naming_the_embedded_port_when_it_is_taken(
    embedded_settings: Settings,
) -> None:
    app = create_app(embedded_settings)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", embedded_settings.embedded_port))
        taken.listen()

        with pytest.raises(EmbeddedDatabaseError, match=f"Port {embedded_settings.embedded_port}"):
            async with app.router.lifespan_context(app):
                pass
