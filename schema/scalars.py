"""Scalars: DateTime as ISO 8601 in UTC, and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition


def _serialize(value: datetime) -> str:
    if type(value) is datetime:
        return _utc_text(value)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _utc_text(value: datetime) -> str:
    # Remembered: the same instants (a transcript's times, a session's) are read again and
    # again, and formatting one costs several times the lookup. Equal instants in other
    # zones are equal keys with the same UTC text.
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"DateTime must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"DateTime must be ISO 8601, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"DateTime must include a time zone (such as Z), got {value!r}")
    return parsed.astimezone(UTC)


DATETIME = strawberry.scalar(
    name="DateTime",
    description="A date and time in ISO 8601, returned in UTC: 2025-06-19T12:00:00.000Z.",
    serialize=_serialize,
    parse_value=_parse,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {datetime: DATETIME}

__all__ = ["JSON", "SCALAR_MAP"]
