"""`sessiongraph operations`, run as an operator runs it: trusting documents from files and
manifests, listing and removing them, and refusing files that are not what they claim."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import orjson

from sessiongraph.operations import MAX_MANIFEST_BYTES
from storage import Database
from tests.api_client import ApiClient
from tests.command_line import sessiongraph

COUNT_DATA = {"data": {"sessions": {"totalCount": 0}}}


def unique_document() -> str:
    return f"query Trusted{uuid.uuid4().hex} {{\n  sessions(first: 1) {{ totalCount }}\n}}\n"


def hex_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def trusted_ids(database: Database) -> set[str]:
    return {doc["_id"] for doc in await database.trusted_documents.find().to_list(None)}


async def test_a_graphql_file_is_trusted_under_the_hash_of_its_exact_text(
    cli_env: dict[str, str], tmp_path: Path, api: ApiClient
) -> None:
    text = unique_document()
    (tmp_path / "count.graphql").write_text(text)

    added = await sessiongraph(cli_env, "operations", "add", str(tmp_path / "count.graphql"))
    response = await api.http.post("/graphql", json={"documentId": f"sha256:{hex_of(text)}"})

    assert added.returncode == 0, added.stderr
    assert f"sha256:{hex_of(text)}" in added.stdout
    assert response.json() == COUNT_DATA


async def test_a_manifest_as_codegen_and_relay_emit_it_is_trusted_whole(
    cli_env: dict[str, str], tmp_path: Path, database: Database
) -> None:
    first, second = unique_document(), unique_document()
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_bytes(orjson.dumps({hex_of(first): first, f"sha256:{hex_of(second)}": second}))

    added = await sessiongraph(cli_env, "operations", "add", str(manifest))
    listed = await sessiongraph(cli_env, "operations", "list")

    assert added.returncode == 0, added.stderr
    assert "2 new" in added.stdout
    assert {f"sha256:{hex_of(first)}", f"sha256:{hex_of(second)}"} <= await trusted_ids(database)
    assert f"sha256:{hex_of(first)}" in listed.stdout
    assert f"query Trusted{first.split('Trusted')[1].split()[0]}" in listed.stdout


async def test_a_manifest_with_one_wrong_hash_stores_nothing(
    cli_env: dict[str, str], tmp_path: Path, database: Database
) -> None:
    right, wrong = unique_document(), unique_document()
    wrong_key = hex_of(wrong + " ")
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(orjson.dumps({hex_of(right): right, wrong_key: wrong}))
    before = await trusted_ids(database)

    added = await sessiongraph(cli_env, "operations", "add", str(manifest))

    assert added.returncode == 1
    assert wrong_key in added.stderr
    assert "nothing was added" in added.stderr
    assert await trusted_ids(database) == before


async def test_an_oversized_manifest_stores_nothing(
    cli_env: dict[str, str], tmp_path: Path, database: Database
) -> None:
    text = unique_document()
    manifest = tmp_path / "huge.json"
    padding = " " * MAX_MANIFEST_BYTES
    manifest.write_bytes(orjson.dumps({hex_of(text): text})[:-1] + padding.encode() + b"}")
    before = await trusted_ids(database)

    added = await sessiongraph(cli_env, "operations", "add", str(manifest))

    assert added.returncode == 1
    assert str(MAX_MANIFEST_BYTES) in added.stderr
    assert await trusted_ids(database) == before


async def test_a_file_that_is_not_graphql_is_refused_with_the_files_that_came_with_it(
    cli_env: dict[str, str], tmp_path: Path, database: Database
) -> None:
    (tmp_path / "good.graphql").write_text(unique_document())
    (tmp_path / "bad.graphql").write_text("query { unclosed")
    before = await trusted_ids(database)

    added = await sessiongraph(
        cli_env, "operations", "add", str(tmp_path / "good.graphql"), str(tmp_path / "bad.graphql")
    )

    assert added.returncode == 1
    assert "bad.graphql" in added.stderr
    assert await trusted_ids(database) == before


async def test_a_removed_document_no_longer_runs(
    cli_env: dict[str, str], tmp_path: Path, api: ApiClient
) -> None:
    text = unique_document()
    (tmp_path / "count.graphql").write_text(text)
    await sessiongraph(cli_env, "operations", "add", str(tmp_path / "count.graphql"))

    removed = await sessiongraph(cli_env, "operations", "remove", f"sha256:{hex_of(text)}")
    again = await sessiongraph(cli_env, "operations", "remove", f"sha256:{hex_of(text)}")
    response = await api.http.post("/graphql", json={"documentId": f"sha256:{hex_of(text)}"})

    assert removed.returncode == 0, removed.stderr
    assert again.returncode == 1
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_DOCUMENT_NOT_FOUND"


async def test_removing_a_malformed_id_is_a_usage_error(cli_env: dict[str, str]) -> None:
    removed = await sessiongraph(cli_env, "operations", "remove", "sha256:nothex")

    assert removed.returncode == 2
    assert "'sha256:nothex'" in removed.stderr
