"""The README documents every setting the server reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiongraph.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def variable(name: str) -> str:
    return "MONGODB_URI" if name == "mongodb_uri" else f"SESSIONGRAPH_{name.upper()}"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_configuration_table(name: str) -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]

    assert any(f"`{variable(name)}`" in row.split("|")[1] for row in rows), variable(name)
