"""Strawberry input objects as plain values, keyed by their GraphQL names."""

from __future__ import annotations

from enum import Enum
from typing import Any

from strawberry.types.base import has_object_definition
from strawberry.types.unset import UNSET


def plain(value: Any) -> Any:
    """`value` with input objects turned into dicts (fields left unset are absent), enums into
    their values and lists converted item by item."""
    if has_object_definition(value):
        definition = value.__strawberry_definition__
        return {
            field.graphql_name or _camel(field.python_name): plain(item)
            for field in definition.fields
            if (item := getattr(value, field.python_name)) is not UNSET
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
