"""A session's message windows (storage/message_windows.py) always agree with the `messages`
collection, and a page they hold is the page the collection gives: after random appends,
concurrent appends, replays and aborted transactions. Events carry no windows.

The property test follows tests/test_fuzz.py: `@given` runs in a worker thread and awaits the
stores on the session's event loop (tests/worker_thread_api.py).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo import ASCENDING

from resolvers.context import Context
from resolvers.messages import session_messages
from resolvers.pagination import PageArgs, message_cursor, message_window
from storage import Database, MessageStore, Page, SessionQuery, SessionStore
from storage.database import to_list
from storage.documents import message_from_document
from storage.events import WATCHED, EventHub, event_of
from storage.message_windows import (
    UNSET_WINDOWS,
    WINDOW_BYTES,
    WINDOW_MESSAGES,
    WINDOWS_FIELD,
    MessageWindows,
    stored_windows,
)
from storage.records import MessageAdded, SessionChanged
from tests.factories import session_record
from tests.windows_check import sized_message, windows_agree
from tests.ws_client import WAIT_SECONDS

PROPERTY_EXAMPLES = 30


class Pages:
    """Pages of one session's messages through the resolver, from its windows, beside the
    same pages cut from its whole transcript as the collection holds it."""

    def __init__(self, database: Database, org_id: str) -> None:
        self.database = database
        self.sessions = SessionStore(database)
        self.messages = MessageStore(database)
        self.org_id = org_id

    def context(self) -> Context:
        return Context(self.org_id, "req-windows", self.sessions, self.messages, EventHub())

    async def compared(self, session_id: str) -> tuple[int, int]:
        """Assert that every page shape gives the same page either way; how many shapes
        were compared, and how many of them the windows held."""
        found = await self.sessions.get_many(self.org_id, [session_id], windows=True)
        record = found[session_id]
        cursor = self.database.messages.find({"session_id": session_id}).sort("seq", ASCENDING)
        stored = [message_from_document(doc) for doc in await to_list(cursor)]
        count = record["message_count"]
        held = 0
        shapes = page_shapes(count)
        for args in shapes:
            window = message_window(count, args)
            expected = Page(
                stored[window.lo - 1 : window.hi] if window.lo <= window.hi else [],
                has_next=window.has_next,
                has_previous=window.has_previous,
            )
            assert await session_messages(self.context(), record, args) == expected, args
            windows = record.get("message_windows")
            if windows is not None and window.lo <= window.hi:
                held += windows.covering(window.lo, window.hi) is not None
        return len(shapes), held


def page_shapes(count: int) -> list[PageArgs]:
    """Forward and backward pages at the ends, the window edges and beyond."""
    sizes = [0, 1, 5, WINDOW_MESSAGES - 1, WINDOW_MESSAGES, WINDOW_MESSAGES + 1, 50]
    seqs = {0, 1, 2, count // 2, count - 5, count - 1, count, count + 1}
    cursors = [None] + [message_cursor(seq) for seq in sorted(seq for seq in seqs if seq >= 0)]
    shapes = []
    for n in sizes:
        for cursor in cursors:
            shapes.append(PageArgs(n, cursor, None, None))
            shapes.append(PageArgs(None, None, n, cursor))
        # Between two cursors, both ways.
        shapes.append(PageArgs(n, cursors[1], None, cursors[-1]))
        shapes.append(PageArgs(None, cursors[2], n, cursors[-2]))
    return shapes


BATCH = st.lists(
    st.one_of(
        st.integers(0, 300),
        st.integers(300, 10_000),
        st.just(WINDOW_BYTES + 10),  # over a window's byte limit alone
    ),
    min_size=1,
    max_size=25,
)


async def test_pages_from_the_windows_are_the_pages_from_the_collection(
    database: Database,
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    pages = Pages(database, org_id)
    loop = asyncio.get_running_loop()
    checked: list[int] = []
    served: list[int] = []

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(WAIT_SECONDS)

    @hypothesis_settings(
        max_examples=PROPERTY_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(st.integers(0, 300), max_size=3), st.lists(BATCH, max_size=6))
    def check(initial: list[int], batches: list[list[int]]) -> None:
        first = [sized_message(size, n) for n, size in enumerate(initial)]
        record, _ = run(pages.sessions.create(org_id, session_record(), first))
        session_id = record["id"]
        assert WINDOWS_FIELD not in record
        n = len(first)
        for batch in batches:
            new = [sized_message(size, n + i) for i, size in enumerate(batch)]
            run(pages.messages.append(org_id, session_id, new))
            n += len(new)
        run(windows_agree(database, session_id))
        shapes, held = run(pages.compared(session_id))
        checked.append(shapes)
        served.append(held)
        # Stored before windows: every page is read; appends after start a tail.
        unset = UNSET_WINDOWS
        run(database.sessions.update_one({"_id": session_id}, unset))
        assert run(pages.compared(session_id))[1] == 0
        run(pages.messages.append(org_id, session_id, [sized_message(5, n), sized_message(9, n)]))
        shapes, held = run(pages.compared(session_id))
        assert held < shapes

    await asyncio.to_thread(check)

    assert len(checked) >= PROPERTY_EXAMPLES
    # Both paths were compared: pages the windows held, and pages read.
    assert sum(served) > 0, "no page was answered from the windows"
    assert sum(served) < sum(checked), "every page was answered from the windows"


async def test_concurrent_appends_and_replays_leave_windows_that_agree(
    database: Database, mongo_uri: str
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    sessions, messages = SessionStore(database), MessageStore(database)
    record, _ = await sessions.create(org_id, session_record(), [sized_message(10, 0)])
    session_id = record["id"]

    async def one(n: int) -> None:
        k = n % 30  # the same batch with the same key: a replay
        await messages.append(org_id, session_id, [sized_message(k * 37 % 900, k)], f"key-{k}")

    # 40 at once from this process, 10 of them replays of an earlier key.
    await asyncio.gather(*(one(n) for n in range(40)))
    # And from another client, which takes no turns with this one: they conflict and retry.
    other = await Database.connect(mongo_uri, database.db.name)
    try:
        racing = MessageStore(other)
        await asyncio.gather(
            *(messages.append(org_id, session_id, [sized_message(50, n)]) for n in range(20)),
            *(racing.append(org_id, session_id, [sized_message(60, n)]) for n in range(20)),
        )
    finally:
        await other.close()

    doc = await windows_agree(database, session_id)
    assert doc["message_count"] == 1 + 30 + 40
    assert len(stored_windows(doc)[1]) == WINDOW_MESSAGES


async def test_events_and_change_stream_documents_carry_no_windows(database: Database) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    published: list[Any] = []
    sessions = SessionStore(database, publish=published.append)
    messages = MessageStore(database, publish=published.append)
    stream = await database.db.watch(WATCHED, full_document="updateLookup")
    try:
        record, _ = await sessions.create(org_id, session_record(), [sized_message(10, 0)])
        await messages.append(org_id, record["id"], [sized_message(20, 1), sized_message(30, 2)])
        await sessions.update(org_id, record["id"], {"name": "renamed"})
        changes: list[dict[str, Any]] = []
        async with asyncio.timeout(WAIT_SECONDS):
            while len(changes) < 6:  # insert, 1 message; update, 2 messages; update
                change = await stream.try_next()
                if change is not None and record["id"] in (
                    change["documentKey"]["_id"],
                    change.get("fullDocument", {}).get("session_id"),
                ):
                    changes.append(change)
    finally:
        await stream.close()
    assert await windows_agree(database, record["id"])

    session_changes = [c for c in changes if c["ns"]["coll"] == "sessions"]
    assert [c["operationType"] for c in session_changes] == ["insert", "update", "update"]
    for change in session_changes:
        assert WINDOWS_FIELD not in change["fullDocument"], change
        updated = change.get("updateDescription", {}).get("updatedFields", {})
        assert WINDOWS_FIELD not in updated, change
    events = [event_of(change) for change in changes] + published
    assert any(isinstance(e, MessageAdded) for e in events)
    for event in events:
        if isinstance(event, SessionChanged) and event.session is not None:
            assert WINDOWS_FIELD not in event.session, event
    assert sum(isinstance(e, SessionChanged) for e in published) == 2  # append, update


@pytest.mark.parametrize("windows", [True, False])
async def test_session_reads_without_messages_leave_the_windows_out(
    database: Database, windows: bool
) -> None:
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    sessions = SessionStore(database)
    record, _ = await sessions.create(org_id, session_record(), [sized_message(10, 0)])
    found = await sessions.get_many(org_id, [record["id"]], windows=windows)
    listed = await sessions.list(org_id, SessionQuery(), first=5, windows=windows)
    for read in (found[record["id"]], listed.items[0]):
        # Decoded windows on a read for messages, nothing otherwise.
        assert isinstance(read.get("message_windows"), MessageWindows) is windows, read
    plain = await sessions.get(org_id, record["id"])
    updated = await sessions.update(org_id, record["id"], {"name": "new"})
    deleted = await sessions.delete(org_id, record["id"])
    for got in (plain, updated, deleted):
        assert got is not None
        assert WINDOWS_FIELD not in got
