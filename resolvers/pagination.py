"""Relay-style paging arguments, opaque cursors and message windows."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from resolvers.errors import BadUserInput
from storage import SessionPosition
from storage.records import SessionOrderField


@dataclass(frozen=True, slots=True)
class PageArgs:
    """Validated `first`/`after`/`last`/`before` arguments."""

    first: int | None
    after: str | None
    last: int | None
    before: str | None

    @classmethod
    def check(
        cls,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
        *,
        default: int,
        maximum: int,
    ) -> PageArgs:
        """Reject sizes out of range and `first` with `last`; default to the first page."""
        if first is not None and last is not None:
            raise BadUserInput("Pass either first or last, not both.", fields=["first", "last"])
        for name, size in (("first", first), ("last", last)):
            if size is not None and not 0 <= size <= maximum:
                raise BadUserInput(
                    f"{name} = {size}: must be between 0 and {maximum}.", fields=[name]
                )
        if first is None and last is None:
            first = default
        return cls(first, after, last, before)

    @property
    def backward(self) -> bool:
        return self.last is not None


def _encode(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _decode(cursor: str, argument: str) -> object:
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise BadUserInput(
            f"{argument} = {cursor[:60]!r}: not a cursor this API issued.", fields=[argument]
        ) from None


def session_cursor(order_by: SessionOrderField, at: datetime, session_id: str) -> str:
    """The cursor of a session in a list ordered by `order_by`."""
    return _encode(["s", order_by, int(at.timestamp() * 1000), session_id])


def session_position(cursor: str | None, argument: str, order_by: str) -> SessionPosition | None:
    """The list position a session cursor points at; it must come from the same order."""
    if cursor is None:
        return None
    value = _decode(cursor, argument)
    match value:
        case ["s", str(field), int(millis), str(session_id)] if field == order_by:
            try:
                at = datetime.fromtimestamp(millis / 1000, UTC)
            except (OverflowError, ValueError, OSError):
                pass  # a time no datetime holds: not a cursor this API issued
            else:
                return SessionPosition(at, session_id)
        case ["s", str(field), int(), str()]:
            raise BadUserInput(
                f"{argument}: the cursor comes from a list ordered by {field.upper()}, "
                f"not {order_by.upper()}.",
                fields=[argument],
            )
    raise BadUserInput(f"{argument} = {cursor[:60]!r}: not a session cursor.", fields=[argument])


def message_cursor(seq: int) -> str:
    """The cursor of a message: its place in the transcript."""
    return _encode(["m", seq])


def message_seq(cursor: str | None, argument: str) -> int | None:
    """The seq a message cursor points at."""
    if cursor is None:
        return None
    match _decode(cursor, argument):
        case ["m", int(seq)] if seq >= 0:
            return seq
    raise BadUserInput(f"{argument} = {cursor[:60]!r}: not a message cursor.", fields=[argument])


@dataclass(frozen=True, slots=True)
class Window:
    """An inclusive seq range of a transcript and whether messages lie beyond it."""

    lo: int
    hi: int
    has_previous: bool
    has_next: bool


def message_window(message_count: int, args: PageArgs) -> Window:
    """Which messages a page holds. Seqs are dense (1..message_count, appended in
    transactions), so the window is arithmetic and needs no count query."""
    after = message_seq(args.after, "after") or 0
    before = message_seq(args.before, "before")
    lo = after + 1
    hi = message_count if before is None else min(before - 1, message_count)
    available = max(0, hi - lo + 1)
    if args.backward:
        size = args.last or 0
        start = max(lo, hi - size + 1)
        return Window(start, hi, has_previous=available > size, has_next=hi < message_count)
    size = args.first or 0
    end = min(hi, lo + size - 1)
    return Window(lo, end, has_previous=lo > 1, has_next=available > size)
