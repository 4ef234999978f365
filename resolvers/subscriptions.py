"""Live transcripts: replay what a client missed, then stream new messages as they commit.

A stream subscribes to the session's events *before* reading storage, so nothing appended
in between is missed; messages are emitted strictly in seq order, each once. Anything the
event feed cannot supply (a subscriber that fell behind, a hole in the seqs it saw) is read
back from storage rather than dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from datetime import datetime

from resolvers.context import Context
from resolvers.errors import BadUserInput, NotFound
from storage import MessageRecord, SessionRecord
from storage.clock import utc_now
from storage.events import Feed

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
HOLE_RETRY_SECONDS = 0.2
HOLE_GIVE_UP_SECONDS = 5.0

_committed_at: ContextVar[datetime | None] = ContextVar("committed_at", default=None)
_yielded_seq: ContextVar[int | None] = ContextVar("yielded_seq", default=None)


def committed_at() -> datetime | None:
    """When the change behind the item a stream of this task last yielded was committed (a
    live message's `created_at`, a session's `updated_at`); None for replayed history.

    Streams set it just before each yield, in the task iterating them, so whoever sends
    the result can tell how long the event took to reach the subscriber.
    """
    return _committed_at.get()


def yielded_seq() -> int | None:
    """The seq of the message a stream of this task last yielded (None for a session
    stream): what a transport that resumes by event id (SSE) sends as that id."""
    return _yielded_seq.get()


async def _stored_after(
    ctx: Context, session_id: str, after: int, up_to: int | None = None
) -> AsyncIterator[MessageRecord]:
    """Stored messages with seq > `after` (and ≤ `up_to`), in order, read a page at a time."""
    while up_to is None or after < up_to:
        hi = after + REPLAY_PAGE if up_to is None else min(up_to, after + REPLAY_PAGE)
        found = await ctx.messages.in_ranges(ctx.org_id, [(session_id, after + 1, hi)])
        page = found.get(session_id, [])
        for record in page:
            yield record
            after = record["seq"]
        if not page or after < hi:
            return


def _seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - utc_now()).total_seconds())


async def message_stream(
    ctx: Context, session_id: str, after_seq: int | None
) -> AsyncIterator[MessageRecord]:
    """The session's messages after `after_seq` (or from now on), then live ones, until the
    session completes, expires or is deleted."""
    if after_seq is not None and after_seq < 0:
        raise BadUserInput(f"afterSeq = {after_seq}: must be 0 or more.", fields=["afterSeq"])
    if ctx.resume_after_seq is not None:
        # A transport resuming a stream (SSE's Last-Event-ID) overrides the document's.
        after_seq = ctx.resume_after_seq
    with ctx.events.subscribe(session_id) as feed:
        session = await ctx.sessions.get(ctx.org_id, session_id)
        if session is None:
            raise NotFound(f"No session with id {session_id!r}.", id=session_id)
        last = session["message_count"] if after_seq is None else after_seq
        async for record in _stored_after(ctx, session_id, last):
            _committed_at.set(None)
            _yielded_seq.set(record["seq"])
            yield record
            last = record["seq"]
        stream = _LiveMessages(ctx, feed, session, last)
        async for record in stream.follow():
            _committed_at.set(record["created_at"])
            _yielded_seq.set(record["seq"])
            yield record


class _LiveMessages:
    """The live part of a message stream: feed events put in seq order, holes filled."""

    def __init__(self, ctx: Context, feed: Feed, session: SessionRecord, last: int) -> None:
        self.ctx = ctx
        self.feed = feed
        self.session_id = session["id"]
        self.expires_at = session["expires_at"]
        self.open = session["status"] == "active"
        self.last = last
        self.pending: dict[int, MessageRecord] = {}
        self.hole_since: float | None = None

    async def follow(self) -> AsyncIterator[MessageRecord]:
        while self.open:
            wait = _seconds_until(self.expires_at)
            if self.pending:
                wait = min(wait, HOLE_RETRY_SECONDS)
            await self.feed.wait(wait)
            async for record in self._drain_feed():
                yield record
            await self._apply_session_change()
            if self.open and utc_now() >= self.expires_at:
                await self._recheck_session()
        # Messages committed before the session closed still belong to the stream.
        async for record in self._catch_up():
            yield record

    async def _drain_feed(self) -> AsyncIterator[MessageRecord]:
        feed = self.feed
        if feed.overflowed:
            feed.overflowed = False
            async for record in self._catch_up():
                yield record
        while feed.messages:
            record = feed.messages.popleft()
            if record["seq"] > self.last and record["org_id"] == self.ctx.org_id:
                self.pending[record["seq"]] = record
        async for record in self._emit_pending():
            yield record

    async def _emit_pending(self) -> AsyncIterator[MessageRecord]:
        while self.last + 1 in self.pending:
            record = self.pending.pop(self.last + 1)
            self.last = record["seq"]
            yield record
        if not self.pending:
            self.hole_since = None
            return
        lowest = min(self.pending)
        async for record in _stored_after(self.ctx, self.session_id, self.last, lowest - 1):
            self.last = record["seq"]
            yield record
        if self.last + 1 == lowest:
            async for record in self._emit_pending():
                yield record
            return
        now = time.monotonic()
        if self.hole_since is None:
            self.hole_since = now
        elif now - self.hole_since > HOLE_GIVE_UP_SECONDS:
            # Only an append that failed after reserving its seqs leaves a lasting hole.
            log.warning(
                "session %s: seq %s..%s never arrived; continuing at %s",
                self.session_id, self.last + 1, lowest - 1, lowest,
            )  # fmt: skip
            self.last = lowest - 1
            self.hole_since = None
            async for record in self._emit_pending():
                yield record

    async def _catch_up(self) -> AsyncIterator[MessageRecord]:
        async for record in _stored_after(self.ctx, self.session_id, self.last):
            self.last = record["seq"]
            yield record
        self.pending = {seq: r for seq, r in self.pending.items() if seq > self.last}

    async def _apply_session_change(self) -> None:
        change, self.feed.session_change = self.feed.session_change, None
        if change is None:
            return
        if change.session is None:
            self.open = False
            return
        if change.session["org_id"] != self.ctx.org_id:
            return
        self.expires_at = change.session["expires_at"]
        self.open = change.session["status"] == "active"

    async def _recheck_session(self) -> None:
        session = await self.ctx.sessions.get(self.ctx.org_id, self.session_id)
        self.open = session is not None and session["status"] == "active"
        if session is not None:
            self.expires_at = session["expires_at"]


async def session_stream(ctx: Context, session_id: str) -> AsyncIterator[SessionRecord]:
    """The session each time it changes (messages appended included), until it is deleted."""
    with ctx.events.subscribe(session_id) as feed:
        if await ctx.sessions.get(ctx.org_id, session_id) is None:
            raise NotFound(f"No session with id {session_id!r}.", id=session_id)
        while True:
            await feed.wait(None)
            feed.messages.clear()
            feed.overflowed = False
            change, feed.session_change = feed.session_change, None
            if change is None:
                continue
            if change.session is None:
                return
            if change.session["org_id"] == ctx.org_id:
                ctx.fresh_loaders()
                _committed_at.set(change.session["updated_at"])
                yield change.session
