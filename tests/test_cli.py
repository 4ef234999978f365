"""The `sessiongraph` command, run as a user runs it: a subprocess on the test database."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.api_client import ApiClient
from tests.command_line import sessiongraph

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"
KEY_ID = re.compile(r"\bkey_[0-9a-f]{16}\b")

TYPENAME = "query Typename { __typename }"


@pytest.fixture
def org_id() -> str:
    """An organization of this test's own, so that listings hold only its keys."""
    return f"acme-{uuid.uuid4().hex[:8]}"


async def create_key(env: dict[str, str], org_id: str) -> tuple[str, str]:
    """(key id, key) of a key made with `keys create`."""
    created = await sessiongraph(env, "keys", "create", "--org", org_id, "--name", "ci")
    assert created.returncode == 0, created.stderr
    key_id = KEY_ID.search(created.stdout)
    assert key_id is not None, created.stdout
    return key_id.group(), created.stdout.splitlines()[-1]


async def typename_status(server: str, key: str) -> int:
    async with ApiClient(server, key) as client:
        response = await client.post(TYPENAME)
    return response.status_code


async def test_keys_create_prints_the_key_alone_on_the_last_line(
    cli_env: dict[str, str], org_id: str
) -> None:
    created = await sessiongraph(cli_env, "keys", "create", "--org", org_id, "--name", "ci")

    assert created.returncode == 0, created.stderr
    last_line = created.stdout.splitlines()[-1]
    assert re.fullmatch(r"sg_[A-Za-z0-9_-]{40,}", last_line), created.stdout


async def test_a_created_key_authenticates_against_the_server(
    cli_env: dict[str, str], org_id: str, server: str
) -> None:
    _, key = await create_key(cli_env, org_id)

    async with ApiClient(server, key) as client:
        assert await client.data(TYPENAME) == {"__typename": "Query"}


async def test_keys_list_shows_id_and_prefix_but_never_the_key(
    cli_env: dict[str, str], org_id: str
) -> None:
    key_id, key = await create_key(cli_env, org_id)

    listed = await sessiongraph(cli_env, "keys", "list", "--org", org_id)

    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert key[:10] in listed.stdout
    assert key not in listed.stdout
    assert key[10:] not in listed.stdout


async def test_keys_list_of_an_organization_without_keys_says_so(
    cli_env: dict[str, str], org_id: str
) -> None:
    listed = await sessiongraph(cli_env, "keys", "list", "--org", org_id)

    assert listed.returncode == 0, listed.stderr
    assert f"No keys for organization {org_id!r}" in listed.stdout


async def test_a_revoked_key_is_refused_with_401(
    cli_env: dict[str, str], org_id: str, server: str
) -> None:
    key_id, key = await create_key(cli_env, org_id)
    assert await typename_status(server, key) == 200

    revoked = await sessiongraph(cli_env, "keys", "revoke", key_id)

    assert revoked.returncode == 0, revoked.stderr
    assert f"Revoked key {key_id}" in revoked.stdout
    assert await typename_status(server, key) == 401


async def test_a_revoked_key_is_listed_as_revoked(cli_env: dict[str, str], org_id: str) -> None:
    key_id, _ = await create_key(cli_env, org_id)
    await sessiongraph(cli_env, "keys", "revoke", key_id)

    listed = await sessiongraph(cli_env, "keys", "list", "--org", org_id)

    (line,) = [line for line in listed.stdout.splitlines() if key_id in line]
    assert "revoked" in line
    assert "active" not in line


async def test_revoking_an_unknown_key_id_fails_naming_it(cli_env: dict[str, str]) -> None:
    revoked = await sessiongraph(cli_env, "keys", "revoke", "key_0000000000000000")

    assert revoked.returncode != 0
    assert "No API key with id 'key_0000000000000000'" in revoked.stderr
    assert "Traceback" not in revoked.stderr


async def test_an_invalid_organization_id_is_rejected_naming_the_value(
    cli_env: dict[str, str],
) -> None:
    created = await sessiongraph(cli_env, "keys", "create", "--org", "bad org!")

    assert created.returncode == 2
    assert "'bad org!'" in created.stderr
    assert "organization id" in created.stderr
    assert "sg_" not in created.stdout


async def test_export_schema_prints_the_sdl_in_schema_graphql(cli_env: dict[str, str]) -> None:
    exported = await sessiongraph(cli_env, "export-schema")

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == SCHEMA_FILE.read_text(), (
        "export-schema differs from schema.graphql: run `make schema`."
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["export-schema"],
        ["seed-demo"],
    ],
    ids=lambda command: " ".join(command) or "sessiongraph",
)
async def test_help_works_on_every_command(cli_env: dict[str, str], command: list[str]) -> None:
    helped = await sessiongraph(cli_env, *command, "--help")

    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(" ".join(["usage: sessiongraph", *command]))


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SESSIONGRAPH_DRIVER", "oracle", "driver"),
        ("MONGODB_URI", "http://x", "MONGODB_URI"),
        ("SESSIONGRAPH_PORT", "99999", "port"),
        ("SESSIONGRAPH_DB_NAME", "no spaces allowed", "db_name"),
    ],
)
async def test_an_invalid_setting_exits_2_naming_the_setting_and_value(
    cli_env: dict[str, str], variable: str, value: str, named: str
) -> None:
    run = await sessiongraph({**cli_env, variable: value}, "keys", "list", "--org", "acme")

    assert run.returncode == 2
    assert "Invalid configuration" in run.stderr
    assert named in run.stderr
    assert value in run.stderr
    assert "Traceback" not in run.stderr


SEEDED = "{ sessions { totalCount nodes { name messageCount } } }"


async def test_seed_demo_creates_an_org_with_sessions_and_a_working_key(
    server: str, cli_env: dict[str, str], org_id: str
) -> None:
    result = await sessiongraph(cli_env, "seed-demo", "--org", org_id)

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    async with ApiClient(server, key) as api:
        data = await api.data(SEEDED)
    assert data["sessions"]["totalCount"] == 3
    assert sorted(n["messageCount"] for n in data["sessions"]["nodes"]) == [1, 2, 2]


# Motor is installed here (the dev extra tests both drivers); this interpreter is told it is
# absent, as it is where sessiongraph was installed without the `motor` extra.
WITHOUT_MOTOR = (
    "import sys; sys.modules['motor'] = None; "
    "from sessiongraph.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def test_the_motor_driver_without_motor_installed_stops_start_up_naming_the_extra(
    cli_env: dict[str, str],
) -> None:
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", WITHOUT_MOTOR, "serve"],
        env={**cli_env, "SESSIONGRAPH_DRIVER": "motor"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 2, run.stderr
    assert "Invalid configuration" in run.stderr
    assert "driver" in run.stderr
    assert "sessiongraph[motor]" in run.stderr
    assert "Traceback" not in run.stderr
