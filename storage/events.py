"""Live events: what changed in which session, fanned out to this process's subscribers.

One source per process feeds the hub: a MongoDB change stream on the database (so writes
made by any server process are seen), or, where the deployment has no change streams, the
stores of this process publishing their own writes. Subscribers register per session id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pymongo.errors import OperationFailure, PyMongoError

from storage.database import Database
from storage.documents import message_from_document, session_from_document
from storage.expiry import ExpirySweeper
from storage.message_windows import WINDOWS_FIELD
from storage.records import Event, MessageAdded, MessageRecord, Publisher, SessionChanged
from storage.session_event_feed import LogWriter, SessionEventHub
from storage.session_events import (
    CHECKPOINT_EVERY_SECONDS,
    LogPosition,
    SessionEventLog,
    event_type_of,
    next_position,
    stop_if_cancelled,
)

log = logging.getLogger(__name__)

EventsMode = Literal["auto", "changestream", "local"]


class Feed:
    """One subscriber's events for one session, bounded.

    A subscriber that falls too far behind loses queued messages but learns that it did
    (`overflowed`), so it can read them back from storage; the latest session state is kept
    apart and never dropped.
    """

    def __init__(self, session_id: str, capacity: int) -> None:
        self.session_id = session_id
        self.capacity = capacity
        self.messages: deque[MessageRecord] = deque()
        self.session_change: SessionChanged | None = None
        self.overflowed = False
        self._ready = asyncio.Event()

    def push(self, event: Event) -> None:
        if isinstance(event, SessionChanged):
            self.session_change = event
        elif len(self.messages) >= self.capacity:
            self.messages.clear()
            self.overflowed = True
        else:
            self.messages.append(event.message)
        self._ready.set()

    async def wait(self, seconds: float | None) -> bool:
        """Wait until something arrives or `seconds` pass; True when something arrived."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # On Python 3.11 asyncio.wait_for (below, and in drivers) returns a result that
            # races with a cancellation and drops the cancellation; a subscriber must stop.
            raise asyncio.CancelledError
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), seconds)
        arrived = self._ready.is_set()
        self._ready.clear()
        return arrived


class EventHub:
    """The process's subscribers by session id, and the source that feeds them."""

    def __init__(
        self, *, feed_capacity: int = 1000, on_restart: Callable[[], None] | None = None
    ) -> None:
        self.feed_capacity = feed_capacity
        self.on_restart = on_restart
        """Called each time the change stream is interrupted, before it is resumed."""
        self._feeds: dict[str, set[Feed]] = {}
        self.session_events = SessionEventHub(feed_capacity)
        """Org-wide subscribers (`sessionEvents`), fed once each event is logged."""
        self.event_log: SessionEventLog | None = None
        """The org-wide event log, kept where a change stream feeds the hub."""
        self.mode: Literal["changestream", "local"] = "local"
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.running = False

    @property
    def feed_count(self) -> int:
        """How many feeds are registered: zero once every subscriber has gone."""
        return sum(len(feeds) for feeds in self._feeds.values())

    @property
    def queued(self) -> int:
        """Messages waiting in feeds, all feeds together; each holds at most `feed_capacity`."""
        return sum(len(feed.messages) for feeds in self._feeds.values() for feed in feeds)

    @contextlib.contextmanager
    def subscribe(self, session_id: str) -> Iterator[Feed]:
        """A feed of `session_id`'s events for as long as the block runs."""
        feed = Feed(session_id, self.feed_capacity)
        self._feeds.setdefault(session_id, set()).add(feed)
        try:
            yield feed
        finally:
            feeds = self._feeds.get(session_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[session_id]

    def publish(self, event: Event) -> None:
        """Hand `event` to every feed of its session."""
        for feed in self._feeds.get(event.session_id, ()):
            feed.push(event)

    def local_publisher(self) -> Publisher | None:
        """What the stores call after each write, or None when a change stream feeds the hub."""
        return self.publish if self.mode == "local" else None

    async def start(
        self,
        db: Database,
        mode: EventsMode,
        event_log: SessionEventLog | None = None,
        sweep_seconds: float = 0,
    ) -> None:
        """Choose and start the source: a change stream where the database offers one.
        With a change stream, `event_log` (when given) is kept and expired sessions are
        marked completed every `sweep_seconds` (0: never)."""
        # Change streams, like transactions, need a replica set or a sharded cluster.
        if mode == "changestream" or (mode == "auto" and db.supports_transactions):
            self.event_log = event_log
            source = ChangeStreamSource(db, self)
            await source.open()
            self.mode = "changestream"
            self._task = asyncio.create_task(source.run(), name="change-stream")
            if event_log is not None and sweep_seconds > 0:
                sweeper = ExpirySweeper(db, sweep_seconds)
                self._sweeper = asyncio.create_task(sweeper.run(), name="expiry-sweeper")
        elif mode == "auto":
            log.warning(
                "The database is a standalone server, which offers no change streams. "
                "Subscriptions see only writes made through this process; run MongoDB as a "
                "replica set so that every server process sees every write."
            )
        self.running = True

    async def stop(self) -> None:
        """Stop the source and close its change stream."""
        self.running = False
        for task in (self._sweeper, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sweeper = None


WATCHED = [
    {
        "$match": {
            "ns.coll": {"$in": ["messages", "sessions", "deleted_sessions"]},
            "operationType": {"$in": ["insert", "update", "replace", "delete"]},
        }
    },
    # A session's message windows stay in the database: events carry the session alone.
    {
        "$unset": [
            f"fullDocument.{WINDOWS_FIELD}",
            f"updateDescription.updatedFields.{WINDOWS_FIELD}",
        ]
    },
]


def event_of(change: dict[str, Any]) -> Event | None:
    """The event a change-stream document stands for."""
    collection = change["ns"]["coll"]
    operation = change["operationType"]
    if collection == "deleted_sessions":
        return None  # the org-wide log's (storage/session_events.py)
    if collection == "messages":
        if operation != "insert":
            return None
        doc = change["fullDocument"]
        return MessageAdded(doc["session_id"], doc["org_id"], message_from_document(doc))
    session_id = change["documentKey"]["_id"]
    if operation == "delete":
        return SessionChanged(session_id, None)
    doc = change.get("fullDocument")
    if doc is None:  # deleted before the lookup; its delete event follows
        return None
    doc.pop("phone_number_secrets", None)
    return SessionChanged(session_id, session_from_document(doc))


class ChangeStreamSource:
    """One change stream on the database, resumed after errors without losing events."""

    RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
    HISTORY_LOST = (280, 286)
    """ChangeStreamFatalError, ChangeStreamHistoryLost: the resume point is gone."""

    def __init__(self, db: Database, hub: EventHub) -> None:
        self._db = db
        self._hub = hub
        self._log = hub.event_log
        self._writer = None if self._log is None else LogWriter(self._log, hub.session_events)
        self._stream: Any = None
        self._position: LogPosition | None = None
        self._resumed = False

    async def open(self) -> None:
        options: dict[str, Any] = {"full_document": "updateLookup"}
        if not self._resumed and self._log is not None and self._writer is not None:
            # Where logging stopped, in whichever process: what committed since is logged.
            self._position = await self._log.checkpoint()
            self._writer.resumed_from(self._position)
        self._resumed = True
        if self._position is not None:
            options["resume_after"] = self._position.token
        try:
            stream = self._db.db.watch(WATCHED, **options)
            if asyncio.iscoroutine(stream):
                stream = await stream
        except OperationFailure as error:
            if error.code not in self.HISTORY_LOST or self._position is None:
                raise
            await self._lost_history(error)
            return await self.open()
        self._stream = stream

    async def _lost_history(self, error: OperationFailure) -> None:
        """The stream cannot resume where it stopped: go on from now, and make the log
        refuse cursors from before the gap."""
        assert self._position is not None
        log.warning("change stream history lost (%s); the event log has a gap", error)
        if self._log is not None:
            await self._log.mark_gap(self._position)
        self._position = None

    async def run(self) -> None:
        failures = 0
        writing = None
        if self._writer is not None:
            writing = asyncio.create_task(self._writer.run(), name="session-event-log")
        try:
            while True:
                try:
                    if self._stream is None:
                        await self.open()
                    async for change in self._stream:
                        await self._handle(change)
                        failures = 0
                    # Ended without an error: invalidated (its database was dropped, say).
                    await self._interrupted("the stream ended", failures)
                    failures += 1
                except OperationFailure as error:
                    if error.code in self.HISTORY_LOST and self._position is not None:
                        await self._close()
                        await self._lost_history(error)
                    else:
                        await self._interrupted(error, failures)
                        failures += 1
                except PyMongoError as error:
                    await self._interrupted(error, failures)
                    failures += 1
        finally:
            await self._close()
            if writing is not None and self._writer is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CHECKPOINT_EVERY_SECONDS):
                        await self._writer.checkpoint()

    async def _handle(self, change: dict[str, Any]) -> None:
        """Hand the change to this process's subscribers, and a session's to the event log
        (whose writer hands it to org-wide subscribers once it can be read back)."""
        position = next_position(self._position, change)
        if self._writer is not None and event_type_of(change) is not None:
            await self._writer.put(change, position)
        event = event_of(change)
        if event is not None:
            self._hub.publish(event)
        self._position = position

    async def _interrupted(self, error: object, failures: int) -> None:
        stop_if_cancelled()
        delay = self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)]
        log.warning("change stream interrupted (%s); resuming in %ss", error, delay)
        if self._hub.on_restart is not None:
            self._hub.on_restart()
        await self._close()
        await asyncio.sleep(delay)

    async def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):
                closing = stream.close()
                if asyncio.iscoroutine(closing):
                    await closing
