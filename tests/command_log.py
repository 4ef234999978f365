"""Counting the database commands a request sends, with PyMongo's command monitoring.

The listener is registered globally when this module is imported, at collection, before the
session's app creates its client (global listeners apply to clients created later). It counts
only while a test asks it to and only commands sent to the test database, leaving out the
change stream's own commands (the app's event source), what runs in the background beside it
(the session event log's writer, the expiry sweep) and cursor clean-up.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from pymongo import monitoring

from tests.api_client import ApiClient

BACKGROUND_COLLECTIONS = {"session_events", "change_stream_checkpoints"}


class CommandLog(monitoring.CommandListener):
    """The commands sent to one database while `counting` is set, by name and collection."""

    def __init__(self) -> None:
        self.counting = False
        self.db_name = ""
        self.commands: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.counting or event.database_name != self.db_name:
            return
        name, command = event.command_name, event.command
        if name in ("killCursors", "endSessions"):
            return
        if name == "getMore" and command.get("collection") == "$cmd.aggregate":
            return  # the app's database-wide change stream, waiting for events
        if name == "aggregate" and any("$changeStream" in s for s in command.get("pipeline", [])):
            return
        if command.get(name) in BACKGROUND_COLLECTIONS:
            return  # the session event log's writer, logging what the change stream saw
        if name == "update" and any(u.get("multi") for u in command.get("updates", [])):
            return  # the expiry sweep
        sweep_batch = name == "find" and command["find"] == "sessions"
        if sweep_batch and "org_id" not in command.get("filter", {}):
            return  # the expiry sweep's batch (every request's reads pin the organization)
        self.commands[f"{name} {command.get('collection' if name == 'getMore' else name)}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COMMANDS = CommandLog()
monitoring.register(COMMANDS)


async def counted(api: ApiClient, db_name: str, query: str) -> Counter[str]:
    """The commands that one request for `query` sends to database `db_name`."""
    COMMANDS.db_name = db_name
    COMMANDS.commands.clear()
    COMMANDS.counting = True
    try:
        await api.data(query)
    finally:
        COMMANDS.counting = False
    return Counter(COMMANDS.commands)


class CommandRecorder(monitoring.CommandListener):
    """Keeps a copy of every command started by the client it is given to (as one of
    `Database.connect`'s `event_listeners`): its name, database and body."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = copy.deepcopy(dict(event.command))
        self.commands.append((event.command_name, event.database_name, command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def sent_to(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        """The (name, body) of each command sent to `collection`, oldest first."""
        return [(name, body) for name, _, body in self.commands if body.get(name) == collection]
