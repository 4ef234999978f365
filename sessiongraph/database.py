"""The configured database, opened once for the app's lifespan and for the CLI's commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pymongo import monitoring

from sessiongraph.embedded import EmbeddedDatabase, port_answers
from sessiongraph.settings import Settings
from storage import Database


@asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    event_listeners: Sequence[monitoring.CommandListener] = (),
    share_running: bool = False,
) -> AsyncIterator[Database]:
    """The `Database` of MONGODB_URI, or of the embedded SecantusDB started for the block
    when it is unset, with its indexes created; closed (and stopped) when the block ends.

    With `share_running` (the CLI), an embedded database already answering on its port (a
    running server's) is used as it is; otherwise a busy port is an EmbeddedDatabaseError.
    """
    embedded: EmbeddedDatabase | None = None
    uri = settings.mongodb_uri
    if uri is None:
        embedded = EmbeddedDatabase(
            command=settings.embedded_command,
            data_dir=settings.embedded_data_dir,
            port=settings.embedded_port,
            start_timeout=settings.embedded_start_timeout_seconds,
        )
        uri = embedded.uri
        if share_running and port_answers(embedded.host, embedded.port):
            embedded = None  # a running server owns it; talk to that one
        else:
            await embedded.start_async()
    try:
        db = await Database.connect(
            uri,
            settings.db_name,
            driver=settings.driver,
            timeout_ms=settings.db_timeout_ms,
            event_listeners=event_listeners,
        )
        try:
            await db.ensure_indexes()
            yield db
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await embedded.stop_async()
