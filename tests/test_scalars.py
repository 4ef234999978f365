"""DateTime output: every instant as UTC to the millisecond with a Z, whatever zone it is held
in and however often it is read (the text of an instant is remembered once formatted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import strawberry
from strawberry.schema.config import StrawberryConfig

from schema.scalars import SCALAR_MAP

INSTANT = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
TIMES = """
query Times { times }
"""


@strawberry.type
class Query:
    @strawberry.field
    def times(self) -> list[datetime]:
        # The same instant in three zones, twice over, and the next millisecond.
        same = [INSTANT.astimezone(zone) for zone in ZONES]
        return [*same, *same, INSTANT + timedelta(milliseconds=1)]


async def test_an_instant_reads_the_same_in_every_zone_and_every_time() -> None:
    schema = strawberry.Schema(query=Query, config=StrawberryConfig(scalar_map=SCALAR_MAP))
    for _ in range(2):
        result = await schema.execute(TIMES)
        assert result.errors is None
        assert result.data == {
            "times": ["2026-05-01T12:30:15.123Z"] * 6 + ["2026-05-01T12:30:15.124Z"]
        }
