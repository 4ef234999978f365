"""Appending messages and paging through transcripts, through the API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from storage import Database
from tests.api_client import ApiClient
from tests.factories import create_session, user_message
from tests.operations import (
    ADD_MESSAGES,
    GET_SESSION,
    MESSAGE_FIELDS,
    TRANSCRIPT,
    UPDATE_SESSION,
)

FULL_TRANSCRIPT = (
    """
query FullTranscript($id: ID!) {
  session(id: $id) { messages(first: 500) { nodes { ...MessageFields } } }
}
"""
    + MESSAGE_FIELDS
)

ADD_MESSAGE_SEQS = """
mutation AddSeqs($sessionId: ID!, $messages: [MessageInput!]!, $key: String) {
  addMessages(sessionId: $sessionId, messages: $messages, idempotencyKey: $key) { id seq content }
}
"""

# One message of every role, with every field each role has.
EVERY_ROLE: list[dict[str, Any]] = [
    {"system": {"content": "You are helpful.", "metadata": {"source": "prompt", "v": 2}}},
    {"system": {"message": "Call started", "time": 1718800000.5, "secondsFromStart": 0.0}},
    {"user": {"content": "Hello", "metadata": {"channel": "web"}}},
    {"user": {
        "message": "I need help", "time": 1718800001.25, "endTime": 1718800002.75,
        "secondsFromStart": 1.25, "duration": 1.5,
    }},
    {"assistant": {
        "content": "Looking it up.", "name": "Ava", "metadata": {"latencyMs": 420},
        "toolCalls": [
            {"id": "call-1", "type": "function",
             "function": {"name": "lookup", "arguments": '{"order": 42}'}},
            {"id": "call-2", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        ],
    }},
    {"assistant": {"refusal": "I cannot share that."}},
    {"tool": {
        "content": '{"status": "shipped"}', "toolCallId": "call-1", "name": "lookup",
        "metadata": {"ms": 12},
    }},
    {"developer": {"content": "Keep answers short.", "name": "ops", "metadata": {"rev": 3}}},
]  # fmt: skip

# What the API returns for EVERY_ROLE, apart from id, sessionId, seq and createdAt.
EVERY_ROLE_RETURNED: list[dict[str, Any]] = [
    {"__typename": "SystemMessage", "role": "SYSTEM", "content": "You are helpful.",
     "metadata": {"source": "prompt", "v": 2}, "message": None, "time": None,
     "secondsFromStart": None},
    {"__typename": "SystemMessage", "role": "SYSTEM", "content": "Call started",
     "metadata": None, "message": "Call started", "time": 1718800000.5,
     "secondsFromStart": 0.0},
    {"__typename": "UserMessage", "role": "USER", "content": "Hello",
     "metadata": {"channel": "web"}, "message": None, "time": None, "endTime": None,
     "secondsFromStart": None, "duration": None},
    {"__typename": "UserMessage", "role": "USER", "content": "I need help", "metadata": None,
     "message": "I need help", "time": 1718800001.25, "endTime": 1718800002.75,
     "secondsFromStart": 1.25, "duration": 1.5},
    {"__typename": "AssistantMessage", "role": "ASSISTANT", "content": "Looking it up.",
     "metadata": {"latencyMs": 420}, "refusal": None, "name": "Ava",
     "toolCalls": [
         {"id": "call-1", "type": "function",
          "function": {"name": "lookup", "arguments": '{"order": 42}'}},
         {"id": "call-2", "type": "function",
          "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
     ]},
    {"__typename": "AssistantMessage", "role": "ASSISTANT", "content": None, "metadata": None,
     "refusal": "I cannot share that.", "name": None, "toolCalls": None},
    {"__typename": "ToolMessage", "role": "TOOL", "content": '{"status": "shipped"}',
     "metadata": {"ms": 12}, "toolCallId": "call-1", "name": "lookup"},
    {"__typename": "DeveloperMessage", "role": "DEVELOPER", "content": "Keep answers short.",
     "metadata": {"rev": 3}, "name": "ops"},
]  # fmt: skip


async def add(
    api: ApiClient, session_id: str, messages: list[dict[str, Any]], key: str | None = None
) -> list[dict[str, Any]]:
    """addMessages that must succeed; returns id, seq and content of each new message."""
    data = await api.data(
        ADD_MESSAGE_SEQS, {"sessionId": session_id, "messages": messages, "key": key}
    )
    added: list[dict[str, Any]] = data["addMessages"]
    return added


async def message_count(api: ApiClient, session_id: str) -> int:
    count: int = (await api.data(GET_SESSION, {"id": session_id}))["session"]["messageCount"]
    return count


async def transcript(api: ApiClient, session_id: str, **paging: Any) -> dict[str, Any]:
    """One page of the transcript (`messages` connection) and the session's messageCount."""
    session: dict[str, Any] = (await api.data(TRANSCRIPT, {"id": session_id, **paging}))["session"]
    return session


def seqs(page: dict[str, Any]) -> list[int]:
    return [edge["node"]["seq"] for edge in page["messages"]["edges"]]


def without_identity(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("id", "sessionId", "seq", "createdAt")}


# Appending --------------------------------------------------------------------------------


async def test_added_messages_continue_the_seq_in_input_order(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message("one"), user_message("two")])

    added = await add(
        api, session_id, [user_message("three"), user_message("four"), user_message("five")]
    )

    assert [(m["seq"], m["content"]) for m in added] == [(3, "three"), (4, "four"), (5, "five")]
    assert await message_count(api, session_id) == 5


async def test_later_appends_continue_after_earlier_ones(api: ApiClient) -> None:
    session_id = await create_session(api)

    first = await add(api, session_id, [user_message("a"), user_message("b")])
    second = await add(api, session_id, [user_message("c")])

    assert [m["seq"] for m in first + second] == [1, 2, 3]


async def test_every_role_and_field_is_returned_by_add_messages(api: ApiClient) -> None:
    session_id = await create_session(api)

    added = (await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": EVERY_ROLE}))[
        "addMessages"
    ]

    assert [without_identity(m) for m in added] == EVERY_ROLE_RETURNED
    assert [m["seq"] for m in added] == list(range(1, len(EVERY_ROLE) + 1))
    assert {m["sessionId"] for m in added} == {session_id}


async def test_every_role_and_field_reads_back_from_the_transcript(api: ApiClient) -> None:
    session_id = await create_session(api)
    added = (await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": EVERY_ROLE}))[
        "addMessages"
    ]

    stored = (await api.data(FULL_TRANSCRIPT, {"id": session_id}))["session"]["messages"]

    assert stored["nodes"] == added


async def test_concurrent_single_message_appends_get_every_seq_exactly_once(
    api: ApiClient,
) -> None:
    session_id = await create_session(api)

    async def writer(task: int) -> list[int]:
        got = []
        for call in range(50):
            (message,) = await add(api, session_id, [user_message(f"{task}:{call}")])
            got.append(message["seq"])
        return got

    results = await asyncio.gather(*(writer(task) for task in range(20)))

    all_seqs = [seq for result in results for seq in result]
    assert sorted(all_seqs) == list(range(1, 1001))
    # Each writer's calls were sequential, so its seqs must grow.
    assert all(result == sorted(result) for result in results)
    assert await message_count(api, session_id) == 1000
    page = await transcript(api, session_id, first=500, after=None)
    assert seqs(page) == list(range(1, 501))


async def test_concurrent_batches_are_each_contiguous_and_in_order(api: ApiClient) -> None:
    session_id = await create_session(api)

    async def writer(task: int) -> list[list[dict[str, Any]]]:
        batches = []
        for call in range(10):
            batch = [user_message(f"{task}:{call}:{i}") for i in range(5)]
            batches.append(await add(api, session_id, batch))
        return batches

    results = await asyncio.gather(*(writer(task) for task in range(20)))

    batches = [batch for result in results for batch in result]
    for task, result in enumerate(results):
        for call, batch in enumerate(result):
            first = batch[0]["seq"]
            assert [m["seq"] for m in batch] == list(range(first, first + 5))
            assert [m["content"] for m in batch] == [f"{task}:{call}:{i}" for i in range(5)]
    assert sorted(m["seq"] for batch in batches for m in batch) == list(range(1, 1001))
    assert await message_count(api, session_id) == 1000


async def test_updated_at_moves_forward_to_the_time_of_the_append(
    api: ApiClient, database: Database
) -> None:
    session_id = await create_session(api)
    earlier = datetime.now(UTC) - timedelta(hours=1)
    await database.sessions.update_one({"_id": session_id}, {"$set": {"updated_at": earlier}})

    added = (
        await api.data(
            ADD_MESSAGES,
            {"sessionId": session_id, "messages": [user_message("x"), user_message("y")]},
        )
    )["addMessages"]

    session = (await api.data(GET_SESSION, {"id": session_id}))["session"]
    assert datetime.fromisoformat(session["updatedAt"]) > earlier
    assert session["updatedAt"] == added[0]["createdAt"] == added[1]["createdAt"]


# Idempotency ------------------------------------------------------------------------------


async def test_retry_with_the_same_key_returns_the_first_messages_and_appends_nothing(
    api: ApiClient,
) -> None:
    session_id = await create_session(api, messages=[user_message("earlier")])
    batch = [user_message("a"), user_message("b")]

    first = await add(api, session_id, batch, key="req-1")
    retry = await add(api, session_id, batch, key="req-1")

    assert retry == first
    assert [m["seq"] for m in first] == [2, 3]
    assert await message_count(api, session_id) == 3


async def test_concurrent_calls_with_the_same_key_append_once(api: ApiClient) -> None:
    session_id = await create_session(api)
    batch = [user_message("a"), user_message("b"), user_message("c")]

    results = await asyncio.gather(*(add(api, session_id, batch, key="same") for _ in range(10)))

    assert all(result == results[0] for result in results)
    assert [m["seq"] for m in results[0]] == [1, 2, 3]
    assert await message_count(api, session_id) == 3
    assert seqs(await transcript(api, session_id)) == [1, 2, 3]


async def test_retry_after_the_session_completed_still_returns_the_first_messages(
    api: ApiClient,
) -> None:
    session_id = await create_session(api)
    first = await add(api, session_id, [user_message("last words")], key="req-1")
    await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})

    retry = await add(api, session_id, [user_message("last words")], key="req-1")

    assert retry == first


async def test_same_key_with_different_messages_is_a_conflict(api: ApiClient) -> None:
    session_id = await create_session(api)
    await add(api, session_id, [user_message("original")], key="req-1")

    error = await api.error(
        ADD_MESSAGES,
        {"sessionId": session_id, "messages": [user_message("changed")], "key": "req-1"},
    )

    assert error["extensions"]["code"] == "CONFLICT"
    assert "req-1" in error["message"]
    assert await message_count(api, session_id) == 1


async def test_same_key_on_another_session_appends_independently(api: ApiClient) -> None:
    first_session = await create_session(api)
    second_session = await create_session(api, messages=[user_message("existing")])

    on_first = await add(api, first_session, [user_message("a")], key="shared")
    on_second = await add(api, second_session, [user_message("b")], key="shared")

    assert on_first[0]["seq"] == 1
    assert on_second[0]["seq"] == 2
    assert on_second[0]["content"] == "b"
    assert on_first[0]["id"] != on_second[0]["id"]
    assert await message_count(api, second_session) == 2


async def test_append_without_key_appends_every_time(api: ApiClient) -> None:
    session_id = await create_session(api)

    first = await add(api, session_id, [user_message("same")])
    second = await add(api, session_id, [user_message("same")])

    assert [first[0]["seq"], second[0]["seq"]] == [1, 2]
    assert first[0]["id"] != second[0]["id"]


# Refusals ---------------------------------------------------------------------------------


async def test_append_to_a_completed_session_is_a_conflict(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message("only")])
    await api.data(UPDATE_SESSION, {"id": session_id, "input": {"status": "COMPLETED"}})

    error = await api.error(
        ADD_MESSAGES, {"sessionId": session_id, "messages": [user_message("late")]}
    )

    assert error["extensions"]["code"] == "CONFLICT"
    assert "completed" in error["message"]
    assert await message_count(api, session_id) == 1


async def test_append_to_a_missing_session_is_not_found(api: ApiClient) -> None:
    error = await api.error(
        ADD_MESSAGES, {"sessionId": "no-such-session", "messages": [user_message("x")]}
    )

    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "no-such-session" in error["message"]


async def test_append_to_another_organizations_session_is_not_found(
    api: ApiClient, other_api: ApiClient
) -> None:
    session_id = await create_session(other_api)

    error = await api.error(
        ADD_MESSAGES, {"sessionId": session_id, "messages": [user_message("x")]}
    )

    assert error["extensions"]["code"] == "NOT_FOUND"
    assert await message_count(other_api, session_id) == 0


# Transcript paging ------------------------------------------------------------------------


async def test_transcript_pages_forward_without_gaps_or_overlap(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(1, 24)])

    visited: list[int] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = await transcript(api, session_id, first=5, after=after)
        pages.append(page["messages"])
        visited += seqs(page)
        if not page["messages"]["pageInfo"]["hasNextPage"]:
            break
        after = page["messages"]["pageInfo"]["endCursor"]
        assert len(pages) < 10, "paging does not end"

    assert visited == list(range(1, 24))
    assert [len(p["edges"]) for p in pages] == [5, 5, 5, 5, 3]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False] + [True] * 4


async def test_transcript_pages_backward_without_gaps_or_overlap(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(1, 24)])

    visited: list[int] = []
    pages: list[dict[str, Any]] = []
    before = None
    while True:
        page = await transcript(api, session_id, last=5, before=before)
        pages.append(page["messages"])
        visited = seqs(page) + visited
        if not page["messages"]["pageInfo"]["hasPreviousPage"]:
            break
        before = page["messages"]["pageInfo"]["startCursor"]
        assert len(pages) < 10, "paging does not end"

    assert visited == list(range(1, 24))
    assert [len(p["edges"]) for p in pages] == [5, 5, 5, 5, 3]
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [False] + [True] * 4


async def test_last_five_are_the_newest_in_ascending_seq(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(1, 13)])

    page = await transcript(api, session_id, last=5)

    assert seqs(page) == [8, 9, 10, 11, 12]
    assert [e["node"]["content"] for e in page["messages"]["edges"]] == [
        "m8", "m9", "m10", "m11", "m12",
    ]  # fmt: skip
    assert page["messages"]["pageInfo"]["hasPreviousPage"] is True
    assert page["messages"]["pageInfo"]["hasNextPage"] is False


async def test_transcript_page_holds_fifty_messages_by_default(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(60)])

    page = await transcript(api, session_id)

    assert seqs(page) == list(range(1, 51))
    assert page["messages"]["pageInfo"]["hasNextPage"] is True


async def test_transcript_total_count_is_the_message_count(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(7)])
    await add(api, session_id, [user_message("more"), user_message("and more")])

    page = await transcript(api, session_id, first=2)

    assert page["messages"]["totalCount"] == page["messageCount"] == 9


async def test_transcript_cursors_are_the_first_and_last_edge_cursors(api: ApiClient) -> None:
    session_id = await create_session(api, messages=[user_message(f"m{i}") for i in range(6)])

    page = (await transcript(api, session_id, first=3, after=None))["messages"]

    assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
    assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]


async def test_transcript_of_a_session_without_messages_is_empty(api: ApiClient) -> None:
    session_id = await create_session(api)

    page = (await transcript(api, session_id))["messages"]

    assert page["edges"] == []
    assert page["totalCount"] == 0
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }
