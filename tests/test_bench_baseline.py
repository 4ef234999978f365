"""bench.http's baseline sends exactly the database commands the server sends for the same
operations on the same database, and gives the same data: otherwise its ratio measures other
work.

Commands are watched with PyMongo's command monitoring, registered globally when this module
is imported (at collection, before the session's app creates its client). Only the reads the
operations make are compared (`find` on sessions and messages): the key lookup is cached by
the baseline and not by the tests' server.

The baseline is the bare endpoint doing the plain two reads per session (the session, then its
messages), so it is tied to the server's fallback path: sessions stored without message windows
(storage/message_windows.py), which the server reads as it did before windows, leaving the
windows out of the projection only where no messages are selected. With windows, the server
answers these pages from the session document; its answers must still be the baseline's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from bench.baseline import SESSION_BY_ID, SESSION_LISTING, SESSION_MESSAGES, Reads
from sessiongraph.settings import Settings
from storage import Database
from storage.database import planner_of
from storage.message_windows import UNSET_WINDOWS, WINDOWS_FIELD
from tests.api_client import ApiClient

CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
READ_COLLECTIONS = ("sessions", "messages")
COMPARED_FIELDS = ("find", "filter", "projection", "sort", "limit", "batchSize")
# Minutes before now of the seeded sessions: several of the "simple" planner's time windows
# (1, 4, 16, 64 minutes, ... back from now), none near a window's edge.
AGES_MINUTES = [0, 0, 0, 0, 0, 0, 3, 3, 3, 10, 10, 10, 30, 30, 200, 200, 3000, 3000] + [9000] * 8
CLOCK_SLACK = timedelta(seconds=5)


class ReadLog(monitoring.CommandListener):
    """The reads sent to one database while `watching` is set."""

    def __init__(self) -> None:
        self.watching = False
        self.db_name = ""
        self.seen: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.watching or event.database_name != self.db_name:
            return
        if event.command_name == "find" and event.command["find"] in READ_COLLECTIONS:
            command = event.command
            self.seen.append({k: command[k] for k in COMPARED_FIELDS if k in command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


WATCH = ReadLog()
monitoring.register(WATCH)


async def watched(db_name: str, read: Awaitable[Any]) -> tuple[Any, list[dict[str, Any]]]:
    """What awaiting `read` returns, and the reads it sent."""
    WATCH.db_name = db_name
    WATCH.seen = []
    WATCH.watching = True
    try:
        result = await read
    finally:
        WATCH.watching = False
    return result, WATCH.seen


def same(ours: Any, theirs: Any) -> bool:
    """Equal, but for times taken from each side's own clock (the windows' bounds)."""
    if isinstance(ours, datetime) and isinstance(theirs, datetime):
        return abs(ours - theirs) <= CLOCK_SLACK
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return list(ours) == list(theirs) and all(same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        pairs = zip(ours, theirs, strict=False)
        return len(ours) == len(theirs) and all(same(a, b) for a, b in pairs)
    return bool(ours == theirs) and type(ours) is type(theirs)


def without_windows(command: dict[str, Any]) -> dict[str, Any]:
    """`command` with the message windows' fields dropped from its projection: the server
    asks for them where messages are selected, and the baseline never does."""
    projection = command.get("projection")
    if projection is None:
        return command
    kept = {k: v for k, v in projection.items() if k != WINDOWS_FIELD}
    return {**command, "projection": kept}


def by_collection(seen: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The sessions reads in order, and the messages reads in any order (they run 8 at once)."""
    sessions = [without_windows(command) for command in seen if command["find"] == "sessions"]
    messages = sorted(repr(command) for command in seen if command["find"] == "messages")
    return sessions, messages


async def seeded(api: ApiClient, database: Database) -> list[str]:
    """Sessions of AGES_MINUTES ages, with 0 to 7 messages each; their ids."""
    now = datetime.now(UTC)
    ids = []
    for index, minutes in enumerate(AGES_MINUTES):
        lines = [{"user": {"content": f"line {n} of {index}"}} for n in range(index % 8)]
        data = await api.data(CREATE, {"input": {"name": f"s{index}", "messages": lines}})
        session_id: str = data["createSession"]["id"]
        at = now - timedelta(minutes=minutes, seconds=index)
        await database.sessions.update_one(
            {"_id": session_id}, {"$set": {"created_at": at, "updated_at": at}}
        )
        ids.append(session_id)
    return ids


async def test_the_baseline_reads_what_the_server_reads(
    api: ApiClient, org: tuple[str, str], database: Database, settings: Settings, mongo_uri: str
) -> None:
    org_id = org[0]
    ids = await seeded(api, database)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        planner = planner_of(await client.admin.command("buildInfo"))
        reads = Reads(client[settings.db_name], planner)
        cases: list[tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]] = [
            (SESSION_LISTING, {"first": 20}, lambda: reads.session_listing(org_id, 20)),
            (SESSION_BY_ID, {"id": ids[7]}, lambda: reads.session_by_id(org_id, ids[7])),
            (SESSION_MESSAGES, {"id": ids[5]}, lambda: reads.session_messages(org_id, ids[5])),
        ]
        for document, variables, baseline_read in cases:
            # Sessions with windows: the same answers, without reading messages.
            data, server_reads = await watched(settings.db_name, api.data(document, variables))
            answer = await baseline_read()
            assert answer == next(iter(data.values())), document
            assert server_reads, "the listener saw nothing: registered too late?"
            assert by_collection(server_reads)[1] == [], server_reads
        await database.sessions.update_many({}, UNSET_WINDOWS)
        for document, variables, baseline_read in cases:
            data, server_reads = await watched(settings.db_name, api.data(document, variables))
            answer, baseline_reads = await watched(settings.db_name, baseline_read())
            assert server_reads, "the listener saw nothing: registered too late?"
            assert answer == next(iter(data.values())), document
            server_sessions, server_messages = by_collection(server_reads)
            baseline_sessions, baseline_messages = by_collection(baseline_reads)
            assert same(server_sessions, baseline_sessions), (server_sessions, baseline_sessions)
            assert server_messages == baseline_messages, document
        if planner == "simple":
            # The listing really went through several time windows.
            _, listing_reads = await watched(settings.db_name, reads.session_listing(org_id, 20))
            assert len(by_collection(listing_reads)[0]) >= 4, listing_reads
    finally:
        await client.close()
