"""Org-wide subscribers of the session event log, and the writer that logs the change
stream's session changes and then hands them to those subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from pymongo.errors import PyMongoError

from storage.session_events import (
    CHECKPOINT_EVERY_SECONDS,
    LogPosition,
    SessionEventLog,
    SessionEventRecord,
    stop_if_cancelled,
)

log = logging.getLogger(__name__)

WRITE_BATCH = 500
QUEUE_CAPACITY = 10_000
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class EventFeed:
    """One subscriber's org-wide events, bounded; one that overflows re-reads the log."""

    def __init__(self, org_id: str, capacity: int) -> None:
        self.org_id = org_id
        self.capacity = capacity
        self.events: deque[SessionEventRecord] = deque()
        self.missed_from: str | None = None
        """The cursor of the first event dropped while the subscriber was behind."""
        self._ready = asyncio.Event()

    def push(self, event: SessionEventRecord) -> None:
        if len(self.events) >= self.capacity:
            if self.missed_from is None:
                self.missed_from = self.events[0].cursor
            self.events.clear()
        if self.missed_from is None:
            self.events.append(event)
        self._ready.set()

    async def wait(self) -> None:
        """Wait until something arrives."""
        await self._ready.wait()
        self._ready.clear()


class SessionEventHub:
    """The process's org-wide subscribers, fed with each event once it is logged."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._feeds: dict[str, set[EventFeed]] = {}

    @property
    def feed_count(self) -> int:
        """How many feeds are registered: zero once every subscriber has gone."""
        return sum(len(feeds) for feeds in self._feeds.values())

    @contextlib.contextmanager
    def subscribe(self, org_id: str) -> Iterator[EventFeed]:
        """A feed of `org_id`'s events for as long as the block runs."""
        feed = EventFeed(org_id, self.capacity)
        self._feeds.setdefault(org_id, set()).add(feed)
        try:
            yield feed
        finally:
            feeds = self._feeds.get(org_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[org_id]

    def publish(self, event: SessionEventRecord) -> None:
        for feed in self._feeds.get(event.org_id, ()):
            feed.push(event)


class LogWriter:
    """Logs the session changes a change stream hands it, in order and apart from the
    stream (so per-session subscribers never wait for the log), then hands each event to
    org-wide subscribers. A batch the database refuses is tried again until it is taken;
    nothing is skipped. `logged` is how far the log is complete, which is what is
    checkpointed."""

    def __init__(self, event_log: SessionEventLog, hub: SessionEventHub) -> None:
        self._log = event_log
        self._hub = hub
        self._queue: asyncio.Queue[tuple[dict[str, Any], LogPosition]] = asyncio.Queue(
            QUEUE_CAPACITY
        )
        self.logged: LogPosition | None = None
        self._checkpointed: LogPosition | None = None
        self._checkpoint_due = 0.0

    def resumed_from(self, position: LogPosition | None) -> None:
        """The stream resumes after `position`, up to which the log is complete."""
        self.logged = self._checkpointed = position

    async def put(self, change: dict[str, Any], position: LogPosition) -> None:
        """Queue a change to log; waits while the queue is full (the log is behind)."""
        await self._queue.put((change, position))

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for event in await self._written(batch):
                self._hub.publish(event)
            self.logged = batch[-1][1]
            if time.monotonic() >= self._checkpoint_due:
                await self.checkpoint()

    async def _written(
        self, batch: list[tuple[dict[str, Any], LogPosition]]
    ) -> list[SessionEventRecord]:
        failures = 0
        while True:
            try:
                events = []
                for change, position in batch:
                    event = await self._log.event_of(change, position)
                    if event is not None:
                        events.append(event)
                if events:
                    await self._log.write(events)
                return events
            except PyMongoError as error:
                stop_if_cancelled()
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "could not write the session event log (%s); again in %ss", error, delay
                )
                await asyncio.sleep(delay)

    async def checkpoint(self) -> None:
        """Record how far the log is complete, when that moved."""
        if self.logged is None or self.logged is self._checkpointed:
            return
        self._checkpoint_due = time.monotonic() + CHECKPOINT_EVERY_SECONDS
        try:
            await self._log.save_checkpoint(self.logged)
            self._checkpointed = self.logged
        except PyMongoError as error:
            stop_if_cancelled()
            log.warning("could not checkpoint the session event log: %s", error)
