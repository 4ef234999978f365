"""The org-wide feed: every change of the caller's sessions, replayed from a cursor, then live.

A stream registers for live events *before* reading the log, and every event is logged
before it is published, so what commits while the log is read arrives live; events are
emitted in cursor (commit) order, each once: whatever is not after the last cursor emitted
is skipped. A subscriber that falls behind re-reads the log from the first event it missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

from resolvers.context import Context
from resolvers.errors import BadUserInput, CursorExpired, FeedUnavailable
from storage import CursorExpired as StoredCursorExpired
from storage.session_event_feed import EventFeed
from storage.session_events import SessionEventLog, SessionEventRecord, is_cursor

REPLAY_PAGE = 500


async def session_event_stream(
    ctx: Context, after: str | None, session_ids: Collection[str] | None = None
) -> AsyncIterator[SessionEventRecord]:
    """The organization's session events after the cursor `after` (or from now on), then
    live ones, for as long as the subscriber stays. `session_ids`, when given, limits the
    feed to those sessions (for credentials scoped to them)."""
    if after is not None and not is_cursor(after):
        raise BadUserInput(
            f"after = {after[:80]!r}: not a cursor of sessionEvents; pass an event's cursor "
            "as it was received.",
            fields=["after"],
        )
    event_log = ctx.events.event_log
    if event_log is None:
        raise FeedUnavailable(
            "sessionEvents needs MongoDB change streams (a replica set or sharded cluster); "
            "this server runs without them."
        )
    with ctx.events.session_events.subscribe(ctx.org_id) as feed:
        if after is not None:
            try:
                await event_log.check_cursor(ctx.org_id, after)
            except StoredCursorExpired as error:
                raise CursorExpired(str(error), cursor=after) from None
        replay = _Replay(ctx, event_log, feed, after, session_ids)
        async for event in replay.history(after):
            yield event
        while True:
            await feed.wait()
            async for event in replay.live():
                yield event


class _Replay:
    """Where a stream stands (the last cursor emitted) and how it reads what it lacks."""

    def __init__(
        self,
        ctx: Context,
        event_log: SessionEventLog,
        feed: EventFeed,
        last: str | None,
        session_ids: Collection[str] | None,
    ) -> None:
        self.ctx = ctx
        self.event_log = event_log
        self.feed = feed
        self.last = last
        self.session_ids = session_ids

    def _new(self, event: SessionEventRecord) -> bool:
        if self.last is not None and event.cursor <= self.last:
            return False
        self.last = event.cursor
        return self.session_ids is None or event.session_id in self.session_ids

    async def history(
        self, start: str | None, inclusive: bool = False
    ) -> AsyncIterator[SessionEventRecord]:
        """Logged events from `start` on, a page at a time, until the log has no more."""
        cursor = start
        while cursor is not None:
            page, more = await self.event_log.after(
                self.ctx.org_id, cursor, REPLAY_PAGE, inclusive=inclusive
            )
            inclusive = False
            for event in page:
                if self._new(event):
                    self.ctx.fresh_loaders()
                    yield event
            cursor = page[-1].cursor if more and page else None

    async def live(self) -> AsyncIterator[SessionEventRecord]:
        """What the feed holds, or, when it overflowed, the log from what it dropped."""
        feed = self.feed
        if feed.missed_from is not None:
            missed, feed.missed_from = feed.missed_from, None
            feed.events.clear()
            async for event in self.history(missed, inclusive=True):
                yield event
        while feed.events:
            event = feed.events.popleft()
            if self._new(event):
                self.ctx.fresh_loaders()
                yield event
