"""schema.graphql, the SDL kept in the repository, is the schema the code serves."""

from __future__ import annotations

from pathlib import Path

from schema import schema_sdl

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_graphql_is_the_schema_the_code_builds() -> None:
    committed = SCHEMA_FILE.read_bytes().decode()

    assert committed == schema_sdl(), (
        f"{SCHEMA_FILE.name} differs from the schema the code builds: "
        "run `make schema` and commit the result."
    )
