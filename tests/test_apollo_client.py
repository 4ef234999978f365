"""Apollo Client's persisted-query link, from Node, against the real server: the script in
tests/clients/apollo/ (see its README) runs here; Node and npm are required."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from tests.serving import bound_socket, serve

APOLLO = Path(__file__).parent / "clients" / "apollo"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.fixture(scope="module")
async def get_server(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings.model_copy(update={"graphql_get": True}))
    async with serve(app, bound_socket()) as url:
        yield url


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=APOLLO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_apollo_clients_persisted_query_link_works_unchanged(
    get_server: str, org: tuple[str, str]
) -> None:
    # Never skipped: a machine without Node fails here rather than passing untested.
    assert NODE is not None, "this test needs node on the PATH"
    assert NPM is not None, "this test needs npm on the PATH"
    if not (APOLLO / "node_modules" / "@apollo" / "client").is_dir():
        installed = await asyncio.to_thread(run, NPM, "ci", "--no-audit", "--no-fund")
        assert installed.returncode == 0, installed.stderr
    env = {
        **os.environ,
        "SESSIONGRAPH_URL": f"{get_server}/graphql",
        "SESSIONGRAPH_API_KEY": org[1],
    }

    checked = await asyncio.to_thread(run, NODE, "apq.mjs", env=env)

    lines = [orjson.loads(line) for line in checked.stdout.splitlines()]
    assert [line["check"] for line in lines if line["ok"]] == [line["check"] for line in lines]
    assert len(lines) == 3, checked.stdout + checked.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
