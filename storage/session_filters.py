"""Session filters as MongoDB query documents, and which of them the embedded database's
planner serves from an index (see docs/performance.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from storage.database import SESSION_INDEXES
from storage.records import SessionPosition, SessionQuery, TimeRange

MILLISECOND = timedelta(milliseconds=1)


def open_at(now: datetime) -> dict[str, Any]:
    """Sessions that read as active at `now` (stored as active, not yet past their expiry):
    the ones messages may be appended to."""
    return {"status": "active", "expires_at": {"$gt": now}}


def expired(now: datetime) -> dict[str, Any]:
    """Sessions stored as active but past their expiry at `now`: they read as completed
    until the expiry sweep stores them so. Served by the (status, expires_at) index and,
    with an organization, the (org_id, status, expires_at) one."""
    return {"status": "active", "expires_at": {"$lte": now}}


def query_filter(org_id: str, query: SessionQuery, now: datetime) -> dict[str, Any]:
    """The sessions of `org_id` that `query` selects at `now`, as one flat filter."""
    match: dict[str, Any] = {"org_id": org_id}
    if query.status == "active":
        match.update(open_at(now))
    elif query.status == "completed":
        # Two branches no session matches both of (a status is one or the other), each
        # served by the (org_id, status, expires_at) index.
        match["$or"] = [
            {"status": "completed"},
            expired(now),
        ]
    if query.name is not None:
        match["name"] = query.name
    for field, values in (
        ("_id", query.ids),
        ("assistant_id", query.assistant_ids),
        ("phone_number_id", query.phone_number_ids),
        ("customer.number", query.customer_numbers),
    ):
        if values is not None:
            match[field] = values[0] if len(values) == 1 else {"$in": list(values)}
    for field, time_range in (("created_at", query.created_at), ("updated_at", query.updated_at)):
        if time_range is not None:
            match[field] = _time_bounds(time_range)
    return match


INDEX_KEYS = [list(model.document["key"]) for model in SESSION_INDEXES]


def disjoint_branches(match: dict[str, Any]) -> list[dict[str, Any]] | None:
    """`match` as flat filters, one per branch of its `$or`, when no document can match two
    of them (each branch pins `status` to a value of its own): a "simple" planner serves
    those from indexes, where it scans the collection for an `$or`. None otherwise."""
    branches = match.get("$or")
    if branches is None:
        return None
    statuses = [branch.get("status") for branch in branches]
    if not all(isinstance(status, str) for status in statuses) or len(set(statuses)) < len(
        statuses
    ):
        return None
    rest = {field: value for field, value in match.items() if field != "$or"}
    if any(field in rest for branch in branches for field in branch):
        return None
    return [{**rest, **branch} for branch in branches]


def served_as_it_stands(match: dict[str, Any]) -> bool:
    """Whether a "simple" planner serves `match` from one index: its equalities are the
    first keys of an index, and its one range (if any) is the next key."""
    ranges = [field for field, value in match.items() if isinstance(value, dict)]
    equal = {field for field in match if field not in ranges}
    if len(ranges) > 1:
        return False
    return any(
        set(keys[: len(equal)]) == equal
        and (not ranges or keys[len(equal) : len(equal) + 1] == ranges)
        for keys in INDEX_KEYS
        if len(keys) >= len(match)
    )


def served_part(match: dict[str, Any]) -> dict[str, Any]:
    """The largest part of `match` a "simple" planner serves from one index: the leading
    keys of an index pinned by equalities in `match`, then the next one if `match` bounds it."""
    best: list[str] = []
    for keys in INDEX_KEYS:
        part: list[str] = []
        for field in keys:
            if field not in match:
                break
            part.append(field)
            if isinstance(match[field], dict):
                break
        if _selectivity(part) > _selectivity(best):
            best = part
    return {field: match[field] for field in best}


BROAD_FIELDS = ("org_id", "status", "expires_at")
"""Fields that select a large share of an organization (a status, and its expiry range)."""


def _selectivity(part: list[str]) -> tuple[int, int]:
    """How narrow an index range pinned by `part` is likely to be, to compare parts: a name,
    an assistant, a phone number or a customer picks few sessions; a status many."""
    return (len([field for field in part if field not in BROAD_FIELDS]), len(part))


STATUS_FIELDS = frozenset({"org_id", "status", "expires_at", "$or"})
"""The fields of an organization's filter by status alone (see `query_filter`)."""


def windowed(base: dict[str, Any]) -> bool:
    """Whether `SessionStore._scan` reads `base`'s pages in time windows: an organization
    unfiltered or filtered by status alone, whose index ranges hold most of it."""
    return set(base) <= STATUS_FIELDS


def scannable(
    base: dict[str, Any],
    order_by: str,
    after: SessionPosition | None,
    before: SessionPosition | None,
) -> bool:
    """Whether `SessionStore._scan` can serve this page: one keyset position at most, and
    no filter on the order field or the id, which its range queries set themselves."""
    return (after is None or before is None) and order_by not in base and "_id" not in base


def _time_bounds(time_range: TimeRange) -> dict[str, datetime]:
    bounds = {"$gt": time_range.gt, "$gte": time_range.gte, "$lt": time_range.lt}
    bounds["$lte"] = time_range.lte
    return descending_key_bounds({op: value for op, value in bounds.items() if value is not None})


def descending_key_bounds(bounds: dict[str, datetime]) -> dict[str, datetime]:
    """The same range as `bounds` in the two operators SecantusDB applies correctly to a
    descending index key followed by another key (`$gt` and `$lte`; its `$gte` drops the
    boundary value there and its `$lt` keeps it). Exact: BSON dates are whole milliseconds,
    and the driver truncates a bound to them, so `>= t` is `> t - 1 ms`."""
    lower: list[datetime] = []
    upper: list[datetime] = []
    for op, value in bounds.items():
        at = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if op == "$gt":
            lower.append(at)
        elif op == "$gte":
            lower.append(at - MILLISECOND)
        elif op == "$lte":
            upper.append(at)
        else:
            upper.append(at - MILLISECOND)
    result: dict[str, datetime] = {}
    if lower:
        result["$gt"] = max(lower)
    if upper:
        result["$lte"] = min(upper)
    return result


def after_position(order_by: str, position: SessionPosition, descending: bool) -> dict[str, Any]:
    """Documents that come after `position` when sorting by (order_by, _id)."""
    op = "$lt" if descending else "$gt"
    return {
        "$or": [
            {order_by: {op: position.at}},
            {order_by: position.at, "_id": {op: position.id}},
        ]
    }
