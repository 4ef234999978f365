"""Building output types from stored configuration (camelCase dicts, as the client sent them)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic.alias_generators import to_camel

T = TypeVar("T")


def from_stored(cls: type[T], data: dict[str, Any], **overrides: Any) -> T:
    """An instance of the Strawberry type `cls` whose fields are read from `data` by their
    camelCase names; `overrides` supplies fields that need converting."""
    values = {
        field.name: overrides[field.name]
        if field.name in overrides
        else data.get(to_camel(field.name))
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
        if field.init
    }
    return cls(**values)
