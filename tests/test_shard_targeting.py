"""Shard targeting: every command the storage layer sends, checked against docs/scaling.md.

A `pymongo.monitoring.CommandListener` on a client of its own records every command while
the real stores run every operation they have (each filter and order of a session list,
appends with and without transactions and idempotency keys, the DataLoader's batch read,
deletes, API keys, the change stream). Each command is reduced to a shape: the collection,
the command name, how its filter pins the fields of that collection's shard key as
docs/scaling.md plans it (`org_id:eq`, `_id:in`, `seq:range`…), and the verdict that follows
(`single-shard`, `targeted`, `multi-targeted`, `scatter`, `unsharded`, `all-shards`).

The test then holds the code and the document to each other, both ways:

- every collection touched has a row in the document's shard-key table, and every row
  there is touched (a new collection fails here until the document covers it);
- every shape observed is a row of the document's command table, and every row there is
  observed (a changed query fails here until the document says what it now does), except
  rows marked "failure path only";
- `messages` commands pin `session_id` and `sessions` commands pin `org_id`, apart from the
  exceptions listed below, which the document must also call scatter-gather;
- every unique index the code creates is compatible with the documented shard key.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce
from pathlib import Path
from typing import Any, Literal

import pytest

from resolvers.loaders import Loaders
from resolvers.pagination import PageArgs, message_cursor, message_window
from storage import (
    ApiKeyNotFound,
    ApiKeyStore,
    Database,
    IdempotencyKeyReused,
    MessageStore,
    SessionClosed,
    SessionNotFound,
    SessionPosition,
    SessionQuery,
    SessionRecord,
    SessionStore,
    TimeRange,
)
from storage.events import EventHub
from storage.expiry import ExpirySweeper
from storage.persisted import PersistedDocumentStore, document_id
from storage.session_events import LogPosition, SessionEventLog
from tests.command_log import CommandRecorder
from tests.factories import message_record, session_record

SCALING_DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"

# Commands that carry no filter of their own: a cursor's next batch or its end goes where the
# cursor lives, and endSessions is the driver's housekeeping.
CONTINUATIONS = {"getMore", "killCursors", "endSessions"}
ADMIN_COMMANDS = {
    "hello",
    "buildInfo",
    "ping",
    "commitTransaction",
    "abortTransaction",
    "killSessions",
}
# A command-table row whose operation says this runs only when something failed (the test
# cannot make the database fail), so the row is not required to be observed.
FAILURE_PATH = "failure path only"
DATABASE_LEVEL = "(database)"
ADMIN = "(admin)"
COMMAND_COLUMNS = ("#", "operation", "collection", "command", "filter", "routing", "verdict")

# Known scatter-gather shapes on a collection whose shard key should be pinned. The document
# lists each with its fix; once the code is fixed, the shape disappears and the document's
# row (no longer observed) fails the test until it is updated too.
KNOWN_SCATTER: set[tuple[str, str, frozenset[str]]] = {
    # `node(id:)` / `nodes(ids:)` for ids that are not sessions' (MessageStore.get_many): a
    # message id alone does not say which session, so which shard, holds it.
    ("messages", "find", frozenset()),
    # The expiry sweep marks every organization's expired sessions: all shards by design
    # (without transactions, one update; with them, a read of a batch first).
    ("sessions", "update", frozenset()),
    ("sessions", "find", frozenset()),
}


@dataclass(frozen=True, slots=True)
class Shape:
    """What decides where mongos sends a command."""

    collection: str
    command: str
    routing: frozenset[str]
    verdict: str

    def __str__(self) -> str:
        routing = " ".join(sorted(self.routing)) or "-"
        return f"{self.collection} {self.command} [{routing}] {self.verdict}"


# Reading the document --------------------------------------------------------------------


def _table(text: str, *columns: str) -> Iterator[list[str]]:
    """The body rows (as stripped cells) of the Markdown table whose header starts with
    `columns` (compared case-insensitively)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        header = [cell.strip().lower() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and header[: len(columns)] == list(columns):
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    return
                yield [cell.strip() for cell in row.strip().strip("|").split("|")]
            return
    raise AssertionError(f"docs/scaling.md has no table with the columns {columns}")


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_shard_keys(text: str) -> dict[str, tuple[str, ...] | None]:
    """Collection -> planned shard key fields (None: left unsharded)."""
    keys: dict[str, tuple[str, ...] | None] = {}
    for cells in _table(text, "collection", "shard key"):
        (collection,) = _ticked(cells[0])
        if "unsharded" in cells[1].lower():
            keys[collection] = None
        else:
            (pattern,) = _ticked(cells[1])
            keys[collection] = tuple(re.findall(r"([\w.]+)\s*:", pattern))
    return keys


def documented_shapes(text: str) -> tuple[set[Shape], set[Shape]]:
    """The command table: # | operation | collection | command | filter | routing | verdict.
    Returns every row's shape, and those of rows marked as failure paths only."""
    shapes: set[Shape] = set()
    optional: set[Shape] = set()
    for cells in _table(text, *COMMAND_COLUMNS):
        assert len(cells) == 7, f"a command-table row needs 7 cells: {cells}"
        collection = cells[2].strip("`")
        (command,) = _ticked(cells[3])
        routing = frozenset(_ticked(cells[5]))
        (verdict,) = re.findall(r"\*\*([\w-]+)\*\*", cells[6])
        shape = Shape(collection, command, routing, verdict)
        shapes.add(shape)
        if FAILURE_PATH in cells[1]:
            optional.add(shape)
    return shapes, optional


# Classifying commands --------------------------------------------------------------------

Constraint = frozenset[Any] | Literal["range"] | None
RANGE_OPERATORS = {"$gt", "$gte", "$lt", "$lte"}


def _value_constraint(value: Any) -> Constraint:
    if isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
        if "$eq" in value:
            return frozenset([value["$eq"]])
        if "$in" in value:
            return frozenset(value["$in"])
        return "range" if RANGE_OPERATORS & set(value) else None
    return frozenset([value])


def _both(a: Constraint, b: Constraint) -> Constraint:
    """The constraint of `a AND b`: a set of values beats a range, which beats nothing."""
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a & b
    if isinstance(a, frozenset):
        return a
    if isinstance(b, frozenset):
        return b
    return a or b


def _either(a: Constraint, b: Constraint) -> Constraint:
    """The constraint of `a OR b`: only as strong as the weaker branch."""
    if a is None or b is None:
        return None
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a | b
    return "range"


def constraint(query: Mapping[str, Any], field: str) -> Constraint:
    """How `query` restricts `field`: the values it may take, a range, or not at all."""
    found: Constraint = None
    for key, value in query.items():
        if key == field:
            found = _both(found, _value_constraint(value))
        elif key == "$and":
            found = _both(found, reduce(_both, (constraint(c, field) for c in value), None))
        elif key == "$or":
            found = _both(found, reduce(_either, [constraint(c, field) for c in value]))
    return found


def route(
    collection: str, command: str, query: Mapping[str, Any], key: tuple[str, ...] | None
) -> Shape:
    """Where mongos would send `command` with `query` when `collection` is sharded by `key`."""
    if key is None:
        return Shape(collection, command, frozenset(), "unsharded")
    kinds: dict[str, str] = {}
    for field in key:
        pinned = constraint(query, field)
        if isinstance(pinned, frozenset):
            kinds[field] = "eq" if len(pinned) <= 1 else "in"
        elif pinned == "range":
            kinds[field] = "range"
    routing = frozenset(f"{field}:{kind}" for field, kind in kinds.items())
    first = kinds.get(key[0])
    if first == "eq":
        verdict = "single-shard" if all(kinds.get(f) == "eq" for f in key) else "targeted"
    elif first == "in":
        verdict = "multi-targeted"
    else:
        verdict = "scatter"
    return Shape(collection, command, routing, verdict)


def queries_of(name: str, command: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The filters (or inserted documents) that decide where a data command goes."""
    if name == "find":
        return [command.get("filter", {})]
    if name in ("findAndModify", "count", "distinct"):
        return [command.get("query", {})]
    if name == "update":
        return [statement["q"] for statement in command["updates"]]
    if name == "delete":
        return [statement["q"] for statement in command["deletes"]]
    if name == "insert":
        return list(command["documents"])
    if name == "aggregate":
        pipeline = command["pipeline"]
        first = pipeline[0] if pipeline else {}
        return [first.get("$match", {})]
    raise AssertionError(f"an unclassified command: {name} {dict(command)}")


def unique_index_problems(command: Mapping[str, Any], key: tuple[str, ...] | None) -> Iterator[str]:
    """Unique indexes that a collection sharded by `key` could not keep unique."""
    for index in command["indexes"]:
        fields = tuple(index["key"])
        if not index.get("unique") or key is None or fields[0] == "_id":
            continue
        if fields[: len(key)] != key:
            yield f"{command['createIndexes']}: unique {fields} is not prefixed by {key}"


@dataclass
class Observed:
    shapes: dict[Shape, list[str]]
    collections: set[str]
    index_problems: list[str]


def analyse(
    commands: list[tuple[str, str, dict[str, Any]]],
    db_name: str,
    keys: dict[str, tuple[str, ...] | None],
) -> Observed:
    observed = Observed({}, set(), [])

    def add(shape: Shape, example: Any) -> None:
        observed.shapes.setdefault(shape, []).append(repr(example)[:300])

    for name, database, command in commands:
        if name in CONTINUATIONS:
            target = command.get("collection", command.get(name))
            if isinstance(target, str) and not target.startswith("$cmd"):
                observed.collections.add(target)
            continue
        if name in ADMIN_COMMANDS:
            add(Shape(ADMIN, name, frozenset(), "admin"), command)
            continue
        assert database == db_name, f"{name} sent to database {database!r}"
        target = command[name]
        if name == "aggregate" and target == 1:
            assert "$changeStream" in command["pipeline"][0], command
            add(Shape(DATABASE_LEVEL, name, frozenset(), "all-shards"), command["pipeline"])
            continue
        assert isinstance(target, str), command
        observed.collections.add(target)
        assert target in keys, (
            f"the storage layer uses the collection {target!r}, which docs/scaling.md does "
            "not plan: add it to the shard-key table and its commands to the command table"
        )
        key = keys[target]
        if name == "createIndexes":
            verdict = "unsharded" if key is None else "all-shards"
            add(Shape(target, name, frozenset(), verdict), command["indexes"])
            observed.index_problems += unique_index_problems(command, key)
            continue
        for query in queries_of(name, command):
            add(route(target, name, query, key), query)
    return observed


# Driving every storage operation ---------------------------------------------------------


async def exercise_sessions(db: Database, org_id: str) -> list[SessionRecord]:
    """Every SessionStore operation, every list filter and order; returns live sessions."""
    store = SessionStore(db)
    first, _ = await store.create(
        org_id,
        session_record(
            name="support",
            assistant_id="asst-1",
            assistant={"name": "Ava"},
            customer={"number": "+14155550123", "name": "Alice"},
            phone_number_id="pn-1",
            phone_number={"twilioPhoneNumber": "+14155550100"},
            phone_number_secrets={"twilioAuthToken": "secret"},
        ),
        [message_record("one"), message_record("two"), message_record("three")],
    )
    second, _ = await store.create(org_id, session_record(), [])
    third, _ = await store.create(
        org_id,
        session_record(customer={"number": "+14155550999"}),
        [message_record("a"), message_record("b")],
    )
    keyed, _ = await store.create(
        org_id, session_record(name="keyed"), [message_record("k")], "create-key"
    )
    replayed, initial = await store.create(
        org_id, session_record(name="keyed"), [message_record("k")], "create-key"
    )
    assert replayed["id"] == keyed["id"]
    assert [m["seq"] for m in initial] == [1]
    with pytest.raises(IdempotencyKeyReused):
        await store.create(org_id, session_record(name="other"), [], "create-key")
    racing = await asyncio.gather(
        *(store.create(org_id, session_record(), [], "create-race") for _ in range(2))
    )
    assert racing[0][0]["id"] == racing[1][0]["id"]
    await store.delete(org_id, keyed["id"])
    await store.delete(org_id, racing[0][0]["id"])
    sessions = [first, second, third]
    ids = tuple(s["id"] for s in sessions)

    assert await store.get(org_id, first["id"]) is not None
    assert await store.get(org_id, "missing") is None
    assert len(await store.get_many(org_id, list(ids))) == 3

    window = TimeRange(gte=first["created_at"] - timedelta(hours=1))
    queries = [
        SessionQuery(),
        SessionQuery(status="active"),
        SessionQuery(status="completed"),
        SessionQuery(name="support"),
        SessionQuery(ids=ids[:1]),
        SessionQuery(ids=ids),
        SessionQuery(assistant_ids=("asst-1",)),
        SessionQuery(assistant_ids=("asst-1", "asst-2")),
        SessionQuery(phone_number_ids=("pn-1",)),
        SessionQuery(phone_number_ids=("pn-1", "pn-2")),
        SessionQuery(customer_numbers=("+14155550123",)),
        SessionQuery(customer_numbers=("+14155550123", "+14155550999")),
        SessionQuery(created_at=window),
        SessionQuery(updated_at=TimeRange(lt=first["updated_at"] + timedelta(hours=1))),
        SessionQuery(status="active", name="support", created_at=window),
    ]
    for query in queries:
        for order_by in ("created_at", "updated_at"):
            for descending in (True, False):
                page = await store.list(
                    org_id, query, order_by=order_by, descending=descending, first=1
                )
                if page.items:
                    edge = page.items[-1]
                    position = SessionPosition(edge[order_by], edge["id"])
                    await store.list(
                        org_id,
                        query,
                        order_by=order_by,
                        descending=descending,
                        first=1,
                        after=position,
                    )
                    await store.list(
                        org_id,
                        query,
                        order_by=order_by,
                        descending=descending,
                        last=1,
                        before=position,
                    )
                await store.list(org_id, query, order_by=order_by, descending=descending, last=2)
        await store.count(org_id, query)

    await store.update(org_id, first["id"], {"name": "renamed"})
    await store.update(org_id, first["id"], {"expiration_seconds": 7200})
    with pytest.raises(SessionNotFound):
        await store.update(org_id, "missing", {"name": "x"})
    with pytest.raises(SessionNotFound):
        await store.update(org_id, "missing", {"expiration_seconds": 120})
    return sessions


async def exercise_messages(db: Database, org_id: str, sessions: list[SessionRecord]) -> None:
    """Appends (plain, idempotent, replayed, racing, refused) and transcript reads."""
    store = MessageStore(db)
    first, second, third = (s["id"] for s in sessions)

    await store.append(org_id, first, [message_record("four")])
    await store.append(
        org_id, second, [message_record("x"), message_record("y")], idempotency_key="k1"
    )
    replayed = await store.append(
        org_id, second, [message_record("x"), message_record("y")], idempotency_key="k1"
    )
    assert [m["seq"] for m in replayed] == [1, 2]
    with pytest.raises(IdempotencyKeyReused):
        await store.append(org_id, second, [message_record("other")], idempotency_key="k1")
    racing = await asyncio.gather(
        store.append(org_id, third, [message_record("c")], idempotency_key="k2"),
        store.append(org_id, third, [message_record("c")], idempotency_key="k2"),
    )
    assert [m["seq"] for m in racing[0]] == [m["seq"] for m in racing[1]] == [3]
    with pytest.raises(SessionNotFound):
        await store.append(org_id, "missing", [message_record("x")])

    # Transcript pages as the resolvers ask for them: forward, backward, and the
    # DataLoader's batch of several sessions in one command.
    loaders = Loaders(org_id, SessionStore(db), store)
    forward = PageArgs.check(2, message_cursor(1), None, None, default=50, maximum=500)
    window = message_window(4, forward)
    assert len(await loaders.messages_by_seq_range.load((first, window.lo, window.hi))) == 2
    loaders = Loaders(org_id, SessionStore(db), store)
    backward = PageArgs.check(None, None, 2, message_cursor(4), default=50, maximum=500)
    window = message_window(4, backward)
    assert len(await loaders.messages_by_seq_range.load((first, window.lo, window.hi))) == 2
    loaders = Loaders(org_id, SessionStore(db), store)
    batch = await asyncio.gather(
        *(loaders.messages_by_seq_range.load((sid, 1, 50)) for sid in (first, second, third))
    )
    assert [len(messages) for messages in batch] == [4, 2, 3]

    # Relay's node lookups: sessions by id, then the ids not found there among messages.
    loaders = Loaders(org_id, SessionStore(db), store)
    ids = [first, second, "not-an-id"]
    found = await loaders.node_by_id.load_many(ids)
    assert [node is not None for node in found] == [True, True, False]
    loaders = Loaders(org_id, SessionStore(db), store)
    message_ids = [m["id"] for m in batch[0]]
    assert all(await loaders.node_by_id.load_many(message_ids))

    closed, _ = await SessionStore(db).create(org_id, session_record(), [])
    await SessionStore(db).update(org_id, closed["id"], {"status": "completed"})
    with pytest.raises(SessionClosed):
        await store.append(org_id, closed["id"], [message_record("late")])


async def exercise_without_transactions(db: Database, org_id: str) -> None:
    """The standalone-server paths: an append reserves its seqs by findAndModify."""
    plain = Database(db.client, db.db.name, supports_transactions=False, planner=db.planner)
    sessions = SessionStore(plain)
    store = MessageStore(plain)
    session, _ = await sessions.create(org_id, session_record(), [message_record("one")])
    keyed, _ = await sessions.create(org_id, session_record(), [message_record("one")], "k")
    assert (await sessions.create(org_id, session_record(), [message_record("one")], "k"))[
        0
    ] == keyed
    await sessions.delete(org_id, keyed["id"])
    await store.append(org_id, session["id"], [message_record("two")], idempotency_key="k")
    await sessions.update(org_id, session["id"], {"status": "completed"})
    with pytest.raises(SessionClosed):
        await store.append(org_id, session["id"], [message_record("late")])
    with pytest.raises(SessionNotFound):
        await store.append(org_id, "missing", [message_record("x")])
    await sessions.delete(org_id, session["id"])
    await ExpirySweeper(plain, 1).sweep()


async def exercise_api_keys(db: Database, org_id: str) -> None:
    keys = ApiKeyStore(db)
    record, key = await keys.create(org_id, "shard test")
    assert [r["id"] for r in await keys.list(org_id)] == [record["id"]]
    assert await keys.organization_of(key) == org_id
    assert await keys.organization_of("sg_unknown") is None
    assert await keys.organization_of("no-prefix") is None
    await keys.revoke(record["id"])
    await keys.revoke(record["id"])
    assert await keys.organization_of(key) is None
    with pytest.raises(ApiKeyNotFound):
        await keys.revoke("key_missing")


async def exercise_persisted_documents(db: Database, org_id: str) -> None:
    store = PersistedDocumentStore(db)
    text = f"query Shard{uuid.uuid4().hex} {{ __typename }}"
    assert await store.add_trusted({document_id(text): text}) == 1
    assert await store.trusted(document_id(text)) == text
    assert document_id(text) in [d["id"] for d in await store.list_trusted()]
    assert await store.remove_trusted(document_id(text))
    assert await store.registered(org_id, document_id(text)) is None
    assert await store.register(org_id, document_id(text), text)
    assert await store.registered(org_id, document_id(text)) == text


async def exercise_deletes(db: Database, org_id: str, sessions: list[SessionRecord]) -> None:
    store = SessionStore(db)
    for session in sessions:
        await store.delete(org_id, session["id"])
    with pytest.raises(SessionNotFound):
        await store.delete(org_id, "missing")


async def exercise_everything(db: Database) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    await db.ping()
    await db.ensure_indexes()
    hub = EventHub()
    event_log = SessionEventLog(db)
    await event_log.ensure_indexes()
    await hub.start(db, "changestream", event_log)
    try:
        sessions = await exercise_sessions(db, org_id)
        await exercise_messages(db, org_id, sessions)
        await exercise_without_transactions(db, org_id)
        await exercise_api_keys(db, org_id)
        await exercise_persisted_documents(db, org_id)
        await exercise_deletes(db, org_id, sessions)
        await exercise_event_log(event_log, org_id, sessions)
        # Sessions past their expiry from the start, for the sweep to mark.
        for _ in range(2):
            await SessionStore(db).create(org_id, session_record(expiration_seconds=0), [])
        await ExpirySweeper(db, 1).sweep()
    finally:
        await hub.stop()


async def exercise_event_log(
    event_log: SessionEventLog, org_id: str, sessions: list[SessionRecord]
) -> None:
    """The feed's reads, once the change stream has logged the sessions' deletion."""
    deleted = sessions[-1]["id"]
    for _ in range(500):
        events, _ = await event_log.after(org_id, "0" * 20, 500)
        if any(e.type == "DELETED" and e.session_id == deleted for e in events):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the change stream did not log the deletion")
    await event_log.check_cursor(org_id, events[0].cursor)
    assert await event_log.checkpoint() is not None
    # An update whose session was deleted before the change stream looked it up.
    position = LogPosition(None, 1, 1, 0)
    change = {
        "ns": {"coll": "sessions"},
        "operationType": "update",
        "documentKey": {"_id": deleted},
        "updateDescription": {"updatedFields": {"name": "x"}},
        "fullDocument": None,
    }
    recorded = await event_log.record(change, position)
    assert recorded is not None
    assert recorded.org_id == org_id
    await event_log.mark_gap(position)


# The test --------------------------------------------------------------------------------


async def test_every_storage_command_is_routed_as_docs_scaling_md_says(
    mongo_uri: str, db_name: str, database: Database
) -> None:
    doc = SCALING_DOC.read_text(encoding="utf-8")
    keys = documented_shard_keys(doc)
    documented, failure_paths = documented_shapes(doc)
    recorder = CommandRecorder()
    db = await Database.connect(mongo_uri, db_name, event_listeners=[recorder])
    # Sharding is MongoDB's: its query shapes, whatever planner the test database has.
    db.planner = "full"
    try:
        assert db.supports_transactions, "run against a replica set: appends use transactions"
        await exercise_everything(db)
    finally:
        await db.close()

    observed = analyse(recorder.commands, db_name, keys)
    seen = set(observed.shapes)
    print("collections touched:", sorted(observed.collections))
    for shape in sorted(seen, key=str):
        print(f"  {shape}  e.g. {observed.shapes[shape][0]}")

    assert observed.collections == set(keys), (
        "docs/scaling.md's shard-key table must cover exactly the collections touched: "
        f"touched {sorted(observed.collections)}, documented {sorted(keys)}"
    )
    assert not observed.index_problems, observed.index_problems

    for shape in seen:
        if shape.command == "createIndexes":
            continue
        if shape.collection == "messages":
            known = (shape.collection, shape.command, shape.routing) in KNOWN_SCATTER
            assert {"session_id:eq", "session_id:in"} & shape.routing or known, (
                f"a messages command without session_id: {shape} {observed.shapes[shape]}"
            )
        if shape.collection == "sessions":
            known = (shape.collection, shape.command, shape.routing) in KNOWN_SCATTER
            assert "org_id:eq" in shape.routing or known, (
                f"a sessions command without org_id: {shape} {observed.shapes[shape]}"
            )
            if known:
                assert shape.verdict == "scatter", shape
        if shape.verdict == "scatter":
            assert (shape.collection, shape.command, shape.routing) in KNOWN_SCATTER, (
                f"a new scatter-gather command: {shape} {observed.shapes[shape]}"
            )

    undocumented = seen - documented
    assert not undocumented, (
        "commands the storage layer sends that docs/scaling.md's command table lacks: "
        + "; ".join(f"{s} e.g. {observed.shapes[s][0]}" for s in sorted(undocumented, key=str))
    )
    stale = documented - failure_paths - seen
    assert not stale, "rows of docs/scaling.md's command table no command matched: " + "; ".join(
        str(s) for s in sorted(stale, key=str)
    )


MESSAGES_KEY = ("session_id", "seq")
SESSIONS_KEY = ("org_id", "_id")


@pytest.mark.parametrize(
    ("query", "key", "routing", "verdict"),
    [
        ({"session_id": "s", "seq": 3}, MESSAGES_KEY, {"session_id:eq", "seq:eq"}, "single-shard"),
        ({"session_id": {"$eq": "s"}, "org_id": "o"}, MESSAGES_KEY, {"session_id:eq"}, "targeted"),
        ({"session_id": {"$in": ["a", "b"]}}, MESSAGES_KEY, {"session_id:in"}, "multi-targeted"),
        (
            {"$or": [{"session_id": "a", "seq": {"$gte": 1}}, {"session_id": "b", "seq": 2}]},
            MESSAGES_KEY,
            {"session_id:in", "seq:range"},
            "multi-targeted",
        ),
        ({"$or": [{"session_id": "a"}, {"org_id": "o"}]}, MESSAGES_KEY, set(), "scatter"),
        ({"org_id": "o", "seq": {"$gt": 1}}, MESSAGES_KEY, {"seq:range"}, "scatter"),
        ({"session_id": {"$ne": "s"}}, MESSAGES_KEY, set(), "scatter"),
        (
            {"$and": [{"org_id": "o"}, {"$or": [{"a": 1}, {"_id": "x"}]}]},
            SESSIONS_KEY,
            {"org_id:eq"},
            "targeted",
        ),
        (
            {"$and": [{"org_id": "o", "_id": "x"}]},
            SESSIONS_KEY,
            {"org_id:eq", "_id:eq"},
            "single-shard",
        ),
        ({"_id": "x"}, SESSIONS_KEY, {"_id:eq"}, "scatter"),
        ({"_id": "x"}, None, set(), "unsharded"),
    ],
)
def test_routing_rules(
    query: dict[str, Any], key: tuple[str, ...] | None, routing: set[str], verdict: str
) -> None:
    shape = route("c", "find", query, key)
    assert (set(shape.routing), shape.verdict) == (routing, verdict)
