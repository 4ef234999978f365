"""Listing sessions with their latest messages costs the same few database commands whatever
the page size: no command per session (N+1). Commands are counted by tests/command_log.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.applications import Starlette

from sessiongraph.settings import Settings
from storage import Database
from storage.message_windows import UNSET_WINDOWS
from storage.sessions import SCAN_QUERIES_MAX
from tests.api_client import ApiClient
from tests.command_log import COMMANDS, counted

LISTING = """
query Listing($first: Int!) {
  sessions(first: $first) {
    nodes {
      id name status messageCount updatedAt
      messages(last: 5) { nodes { seq role content } }
    }
  }
}
"""
CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
MESSAGES_PER_SESSION = 6


async def listing_commands(api: ApiClient, db_name: str, first: int) -> Counter[str]:
    """The commands one `sessions(first:)` request with each one's last 5 messages sends."""
    COMMANDS.db_name = db_name
    COMMANDS.commands.clear()
    COMMANDS.counting = True
    try:
        data: dict[str, Any] = await api.data(LISTING, {"first": first})
    finally:
        COMMANDS.counting = False
    nodes = data["sessions"]["nodes"]
    assert len(nodes) == first
    for node in nodes:  # the page really holds each session's last 5 messages
        assert [m["seq"] for m in node["messages"]["nodes"]] == [2, 3, 4, 5, 6]
    return Counter(COMMANDS.commands)


async def test_listing_sends_the_same_few_commands_whatever_the_page_size(
    api: ApiClient, settings: Settings, app: Starlette, database: Database
) -> None:
    lines = [{"user": {"content": f"line {n}"}} for n in range(MESSAGES_PER_SESSION)]
    for index in range(100):
        await api.data(CREATE, {"input": {"name": f"session {index}", "messages": lines}})
    planner = app.state.services.sessions.planner

    # Each session's tail holds its last 5 messages: the page alone is read.
    one = await listing_commands(api, settings.db_name, 1)
    assert one == {"find api_keys": 1, "find sessions": 1}, dict(one)
    for first in (20, 50, 100):
        page = await listing_commands(api, settings.db_name, first)
        if planner == "simple":
            assert page["find sessions"] <= SCAN_QUERIES_MAX, dict(page)
            page["find sessions"] = one["find sessions"]
        assert page == one, f"1 session: {dict(one)}; {first} sessions: {dict(page)}"

    # Sessions stored without windows (before them) are served by reading their messages.
    await database.sessions.update_many({}, UNSET_WINDOWS)
    one = await listing_commands(api, settings.db_name, 1)
    # The sessions and their messages at least: nothing seen means the listener came too late.
    assert one["find messages"] == 1, f"the listener saw {dict(one)}"
    for first in (20, 50, 100):
        page = await listing_commands(api, settings.db_name, first)
        if planner == "simple":
            # The embedded database scans for an `$or`, so each session's messages are
            # their own index-served command there (docs/performance.md); nothing else grows.
            page["find messages"] -= first - 1
            # Its list reads time windows until the page is full: a bounded number of them.
            assert page["find sessions"] <= SCAN_QUERIES_MAX, dict(page)
            page["find sessions"] = one["find sessions"]
        # No command per session, and no getMore for a page's messages (500 at 100).
        assert page == one, f"1 session: {dict(one)}; {first} sessions: {dict(page)}"
    # The key lookup (the tests' server caches no keys), the page, and all its messages.
    assert sum(one.values()) <= 3, dict(one)


async def test_aliased_session_lookups_are_read_with_one_command(
    api: ApiClient, settings: Settings, app: Starlette, database: Database
) -> None:
    lines = [{"user": {"content": "hello"}}]
    ids = [
        (await api.data(CREATE, {"input": {"name": f"alias {n}", "messages": lines}}))[
            "createSession"
        ]["id"]
        for n in range(5)
    ]
    fields = "{ name messages(last: 1) { nodes { content } } }"
    one = await counted(api, settings.db_name, f'{{ s0: session(id: "{ids[0]}") {fields} }}')
    five = await counted(
        api,
        settings.db_name,
        "{ " + " ".join(f's{n}: session(id: "{i}") {fields}' for n, i in enumerate(ids)) + " }",
    )

    # Each session's last message is in its tail: the sessions alone are read.
    assert one == {"find api_keys": 1, "find sessions": 1}, dict(one)
    assert five == one, f"1 session: {dict(one)}; 5 sessions: {dict(five)}"

    # Without windows, their messages are read too, in one batch.
    await database.sessions.update_many({}, UNSET_WINDOWS)
    one = await counted(api, settings.db_name, f'{{ s0: session(id: "{ids[0]}") {fields} }}')
    five = await counted(
        api,
        settings.db_name,
        "{ " + " ".join(f's{n}: session(id: "{i}") {fields}' for n, i in enumerate(ids)) + " }",
    )
    assert one["find messages"] == 1, dict(one)
    if app.state.services.sessions.planner == "simple":
        five["find messages"] -= 4  # one index-served range per session there
    assert five == one, f"1 session: {dict(one)}; 5 sessions: {dict(five)}"


TOTAL = "{ sessions(first: 1) { totalCount nodes { id } } }"


async def test_an_organizations_total_count_is_one_counter_read_whatever_its_size(
    api: ApiClient, settings: Settings, database: Database
) -> None:
    await api.data(CREATE, {"input": {"name": "first"}})
    first = await counted(api, settings.db_name, TOTAL)  # the first count of the organization
    small = await counted(api, settings.db_name, TOTAL)
    for index in range(30):
        await api.data(CREATE, {"input": {"name": f"more {index}"}})

    large = await counted(api, settings.db_name, TOTAL)

    # The page itself (its time windows on the embedded database) is the listing test's.
    for commands in (small, large):
        del commands["find sessions"]
    assert large == small, f"1 session: {dict(small)}; 31 sessions: {dict(large)}"
    if database.supports_transactions:
        # The organization's counter (storage/session_counts.py), counted once (its sessions,
        # and those stored as completed), then read.
        assert (first["aggregate sessions"], first["update session_counts"]) == (2, 1)
        assert (large["find session_counts"], large["aggregate sessions"]) == (1, 0)
    else:
        assert (large["aggregate sessions"], large["find session_counts"]) == (1, 0)


async def test_which_fields_of_one_document_read_the_windows_is_decided_per_field(
    api: ApiClient, settings: Settings
) -> None:
    # The decision is remembered per operation and response path: a field of the same
    # document that selects no messages must not lend its answer to one that does.
    lines = [{"user": {"content": "hello"}}]
    created = await api.data(CREATE, {"input": {"name": "per field", "messages": lines}})
    session_id = created["createSession"]["id"]
    document = (
        f'{{ plain: session(id: "{session_id}") {{ name }} '
        f'paged: session(id: "{session_id}") {{ messages(last: 1) {{ nodes {{ content }} }} }} }}'
    )
    for _ in range(2):  # the first request decides, the second is answered from memory
        commands = await counted(api, settings.db_name, document)
        # One read without the windows, one with them (which holds the page); no messages.
        assert commands == {"find api_keys": 1, "find sessions": 2}, dict(commands)
