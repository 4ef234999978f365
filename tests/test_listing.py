"""Listing sessions through the API: filters, order, and Relay paging."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import Database
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION_ID, LIST_SESSIONS, UPDATE_SESSION

# (order field, direction) as the API takes them, for parametrizing over every order.
ORDERS = [
    ("CREATED_AT", "DESC"),
    ("CREATED_AT", "ASC"),
    ("UPDATED_AT", "DESC"),
    ("UPDATED_AT", "ASC"),
]
STORED_FIELD = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at"}
BASE_TIME = datetime(2025, 6, 19, 12, 0, tzinfo=UTC)


async def create(api: ApiClient, **fields: Any) -> str:
    """A new session of the test's organization; returns its id."""
    created = await api.data(CREATE_SESSION_ID, {"input": fields})
    session_id: str = created["createSession"]["id"]
    return session_id


async def create_many(api: ApiClient, count: int) -> list[str]:
    return list(await asyncio.gather(*(create(api, name=f"s{i}") for i in range(count))))


async def listing(api: ApiClient, **variables: Any) -> dict[str, Any]:
    """The `sessions` connection for these variables."""
    sessions: dict[str, Any] = (await api.data(LIST_SESSIONS, variables))["sessions"]
    return sessions


async def listed_ids(api: ApiClient, **variables: Any) -> list[str]:
    """The ids of one page, in order (first: 100 unless given)."""
    variables.setdefault("first", 100)
    return [edge["node"]["id"] for edge in (await listing(api, **variables))["edges"]]


async def set_times(database: Database, times: dict[str, datetime], field: str) -> None:
    """Set the stored `field` (created_at or updated_at) of each session directly."""
    for session_id, at in times.items():
        await database.sessions.update_one({"_id": session_id}, {"$set": {field: at}})


def expected_order(times: dict[str, datetime], direction: str) -> list[str]:
    """Session ids sorted by (time, id), as the API documents its order."""
    ordered = sorted(times, key=lambda session_id: (times[session_id], session_id))
    return ordered if direction == "ASC" else ordered[::-1]


async def sessions_with_shared_times(
    api: ApiClient, database: Database, count: int, field: str
) -> dict[str, datetime]:
    """`count` sessions whose `field` values come in groups of three equal times, so that
    the order depends on the id tie-break; returns each id's time."""
    ids = await create_many(api, count)
    times = {session_id: BASE_TIME + timedelta(seconds=i // 3) for i, session_id in enumerate(ids)}
    await set_times(database, times, field)
    return times


# Filters ----------------------------------------------------------------------------------


async def test_status_active_selects_live_active_sessions_only(
    api: ApiClient, database: Database
) -> None:
    active = await create(api)
    await create(api, status="COMPLETED")
    expired = await create(api)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await database.sessions.update_one({"_id": expired}, {"$set": {"expires_at": past}})

    assert await listed_ids(api, filter={"status": "ACTIVE"}) == [active]


async def test_status_completed_includes_expired_sessions(
    api: ApiClient, database: Database
) -> None:
    await create(api)
    completed = await create(api, status="COMPLETED")
    expired = await create(api)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await database.sessions.update_one({"_id": expired}, {"$set": {"expires_at": past}})

    page = await listing(api, filter={"status": "COMPLETED"})

    assert {edge["node"]["id"] for edge in page["edges"]} == {completed, expired}
    assert {edge["node"]["status"] for edge in page["edges"]} == {"COMPLETED"}
    assert page["totalCount"] == 2


async def test_name_filter_matches_the_exact_name(api: ApiClient) -> None:
    first = await create(api, name="alpha")
    await create(api, name="beta")
    await create(api, name="alphabet")
    await create(api)
    second = await create(api, name="alpha")

    assert set(await listed_ids(api, filter={"name": "alpha"})) == {first, second}


async def test_assistant_id_filter(api: ApiClient) -> None:
    wanted = await create(api, assistantId="asst-1")
    await create(api, assistantId="asst-2")
    await create(api)

    assert await listed_ids(api, filter={"assistantId": "asst-1"}) == [wanted]


async def test_assistant_id_any_filter(api: ApiClient) -> None:
    one = await create(api, assistantId="asst-1")
    await create(api, assistantId="asst-2")
    three = await create(api, assistantId="asst-3")
    await create(api)

    ids = await listed_ids(api, filter={"assistantIdAny": ["asst-1", "asst-3", "asst-9"]})
    assert set(ids) == {one, three}


async def test_phone_number_id_filter(api: ApiClient) -> None:
    wanted = await create(api, phoneNumberId="pn-1")
    await create(api, phoneNumberId="pn-2")
    await create(api)

    assert await listed_ids(api, filter={"phoneNumberId": "pn-1"}) == [wanted]


async def test_phone_number_id_any_filter(api: ApiClient) -> None:
    one = await create(api, phoneNumberId="pn-1")
    two = await create(api, phoneNumberId="pn-2")
    await create(api, phoneNumberId="pn-3")
    await create(api)

    ids = await listed_ids(api, filter={"phoneNumberIdAny": ["pn-1", "pn-2"]})
    assert set(ids) == {one, two}


async def test_id_any_filter(api: ApiClient) -> None:
    ids = await create_many(api, 5)

    selected = await listed_ids(api, filter={"idAny": [ids[0], ids[3], "no-such-id"]})
    assert set(selected) == {ids[0], ids[3]}


async def test_customer_number_filter(api: ApiClient) -> None:
    wanted = await create(api, customer={"number": "+14155550001"})
    await create(api, customer={"number": "+14155550002"})
    await create(api, customer={"name": "No number"})
    await create(api)

    assert await listed_ids(api, filter={"customerNumber": "+14155550001"}) == [wanted]


async def test_customer_number_any_filter(api: ApiClient) -> None:
    one = await create(api, customer={"number": "+14155550001"})
    await create(api, customer={"number": "+14155550002"})
    three = await create(api, customer={"number": "+14155550003"})
    await create(api)

    ids = await listed_ids(api, filter={"customerNumberAny": ["+14155550001", "+14155550003"]})
    assert set(ids) == {one, three}


@pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
@pytest.mark.parametrize(
    ("bound", "selected"),
    [
        pytest.param("gt", {2}, id="gt"),
        pytest.param("gte", {1, 2}, id="gte"),
        pytest.param("lt", {0}, id="lt"),
        pytest.param("lte", {0, 1}, id="lte"),
    ],
)
async def test_time_bound_selects_sessions_on_its_side_of_the_boundary(
    api: ApiClient, database: Database, field: str, bound: str, selected: set[int]
) -> None:
    ids = await create_many(api, 3)
    stored = "created_at" if field == "createdAt" else "updated_at"
    await set_times(
        database, {sid: BASE_TIME + timedelta(minutes=i) for i, sid in enumerate(ids)}, stored
    )
    # The boundary is the middle session's time exactly as the API returned it.
    listed = (await listing(api, first=100))["edges"]
    boundary = next(e["node"][field] for e in listed if e["node"]["id"] == ids[1])

    found = await listed_ids(api, filter={field: {bound: boundary}})

    assert set(found) == {ids[i] for i in selected}


async def test_time_bounds_combine_into_a_range(api: ApiClient, database: Database) -> None:
    ids = await create_many(api, 5)
    times = {sid: BASE_TIME + timedelta(minutes=i) for i, sid in enumerate(ids)}
    await set_times(database, times, "created_at")
    listed = {e["node"]["id"]: e["node"]["createdAt"] for e in (await listing(api))["edges"]}

    found = await listed_ids(
        api, filter={"createdAt": {"gt": listed[ids[0]], "lte": listed[ids[3]]}}
    )

    assert set(found) == {ids[1], ids[2], ids[3]}


async def test_filters_combine_with_and(api: ApiClient) -> None:
    both = await create(api, name="support", assistantId="asst-1", phoneNumberId="pn-1")
    await create(api, name="support", assistantId="asst-2", phoneNumberId="pn-1")
    await create(api, name="sales", assistantId="asst-1", phoneNumberId="pn-1")
    await create(api, name="support", assistantId="asst-1", phoneNumberId="pn-2")

    ids = await listed_ids(
        api, filter={"name": "support", "assistantId": "asst-1", "phoneNumberIdAny": ["pn-1"]}
    )

    assert ids == [both]


async def test_a_single_value_and_a_list_of_the_same_filter_must_both_match(
    api: ApiClient,
) -> None:
    one = await create(api, assistantId="asst-1")
    await create(api, assistantId="asst-2")

    assert await listed_ids(
        api, filter={"assistantId": "asst-1", "assistantIdAny": ["asst-1", "asst-2"]}
    ) == [one]
    assert (
        await listed_ids(api, filter={"assistantId": "asst-1", "assistantIdAny": ["asst-2"]}) == []
    )


async def test_status_combines_with_other_filters(api: ApiClient) -> None:
    wanted = await create(api, name="call", status="COMPLETED")
    await create(api, name="call")
    await create(api, name="other", status="COMPLETED")

    assert await listed_ids(api, filter={"name": "call", "status": "COMPLETED"}) == [wanted]


async def test_filter_matching_nothing_gives_an_empty_connection(api: ApiClient) -> None:
    await create(api, name="present")

    page = await listing(api, filter={"name": "absent"})

    assert page["edges"] == []
    assert page["totalCount"] == 0
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


async def test_sessions_of_another_organization_are_not_listed(
    api: ApiClient, other_api: ApiClient
) -> None:
    mine = await create(api, name="shared-name")
    await create(other_api, name="shared-name")

    page = await listing(api, filter={"name": "shared-name"})

    assert [edge["node"]["id"] for edge in page["edges"]] == [mine]
    assert page["totalCount"] == 1


# Order ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "direction"), ORDERS)
async def test_order_by_time_with_ties_broken_by_id(
    api: ApiClient, database: Database, field: str, direction: str
) -> None:
    ids = await create_many(api, 8)
    # Equal times in pairs, and the two time fields ordered differently from each other.
    times = {sid: BASE_TIME + timedelta(seconds=i // 2) for i, sid in enumerate(ids)}
    if field == "UPDATED_AT":
        times = {sid: BASE_TIME + timedelta(seconds=(7 - i) // 2) for i, sid in enumerate(ids)}
        await set_times(database, {sid: BASE_TIME for sid in ids}, "created_at")
    await set_times(database, times, STORED_FIELD[field])

    ids_in_order = await listed_ids(api, orderBy={"field": field, "direction": direction})

    assert ids_in_order == expected_order(times, direction)


async def test_default_order_is_created_at_descending(api: ApiClient, database: Database) -> None:
    times = await sessions_with_shared_times(api, database, 9, "created_at")
    # updated_at in the opposite order, so that ordering by it would show.
    await set_times(
        database, {sid: BASE_TIME - (at - BASE_TIME) for sid, at in times.items()}, "updated_at"
    )

    assert await listed_ids(api) == expected_order(times, "DESC")


async def test_default_page_holds_twenty_sessions(api: ApiClient) -> None:
    await create_many(api, 23)

    page = (await api.data(LIST_SESSIONS))["sessions"]

    assert len(page["edges"]) == 20
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] == 23


# Paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "direction"), ORDERS)
async def test_paging_forward_visits_every_session_once_in_order(
    api: ApiClient, database: Database, field: str, direction: str
) -> None:
    times = await sessions_with_shared_times(api, database, 23, STORED_FIELD[field])
    order = {"field": field, "direction": direction}

    visited: list[str] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = await listing(api, first=5, after=after, orderBy=order)
        pages.append(page)
        visited += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 10, "paging does not end"

    assert visited == expected_order(times, direction)
    assert [len(page["edges"]) for page in pages] == [5, 5, 5, 5, 3]
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [False] + [True] * 4


@pytest.mark.parametrize(("field", "direction"), ORDERS)
async def test_paging_backward_from_the_end_visits_every_session_once_in_order(
    api: ApiClient, database: Database, field: str, direction: str
) -> None:
    times = await sessions_with_shared_times(api, database, 23, STORED_FIELD[field])
    order = {"field": field, "direction": direction}

    visited: list[str] = []
    pages: list[dict[str, Any]] = []
    before = None
    while True:
        page = await listing(api, last=5, before=before, orderBy=order)
        pages.append(page)
        visited = [edge["node"]["id"] for edge in page["edges"]] + visited
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
        assert len(pages) < 10, "paging does not end"

    assert visited == expected_order(times, direction)
    assert [len(page["edges"]) for page in pages] == [5, 5, 5, 5, 3]
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [False] + [True] * 4


async def test_page_cursors_are_the_first_and_last_edge_cursors(api: ApiClient) -> None:
    await create_many(api, 7)

    first_page = await listing(api, first=3)
    next_page = await listing(api, first=3, after=first_page["pageInfo"]["endCursor"])

    for page in (first_page, next_page):
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]


async def test_every_edge_cursor_resumes_right_after_its_session(api: ApiClient) -> None:
    await create_many(api, 6)
    everything = (await listing(api, first=100))["edges"]

    for position, edge in enumerate(everything):
        following = await listed_ids(api, first=100, after=edge["cursor"])
        assert following == [e["node"]["id"] for e in everything[position + 1 :]]


async def test_a_cursor_from_another_order_is_bad_user_input(api: ApiClient) -> None:
    await create_many(api, 2)
    page = await listing(api, first=1, orderBy={"field": "UPDATED_AT"})

    error = await api.error(LIST_SESSIONS, {"first": 1, "after": page["pageInfo"]["endCursor"]})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "updated_at" in error["message"].lower()


async def test_a_malformed_cursor_is_bad_user_input(api: ApiClient) -> None:
    error = await api.error(LIST_SESSIONS, {"first": 1, "after": "not-a-cursor"})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "not-a-cursor" in error["message"]


async def test_total_count_respects_the_filter_and_ignores_paging(api: ApiClient) -> None:
    await asyncio.gather(*(create(api, name="match") for _ in range(7)))
    await asyncio.gather(*(create(api, name="other") for _ in range(4)))

    first_page = await listing(api, first=2, filter={"name": "match"})
    later_page = await listing(
        api, first=2, after=first_page["pageInfo"]["endCursor"], filter={"name": "match"}
    )
    unfiltered = await listing(api, first=1)

    assert (first_page["totalCount"], later_page["totalCount"]) == (7, 7)
    assert len(first_page["edges"]) == 2
    assert unfiltered["totalCount"] == 11


async def test_nodes_are_the_nodes_of_the_edges(api: ApiClient) -> None:
    await create_many(api, 6)

    page = await listing(api, first=4)

    assert page["nodes"] == [{"id": edge["node"]["id"]} for edge in page["edges"]]
    assert len(page["nodes"]) == 4


async def test_first_zero_gives_an_empty_page(api: ApiClient) -> None:
    await create_many(api, 3)

    page = await listing(api, first=0)

    assert page["edges"] == []
    assert page["nodes"] == []
    assert page["pageInfo"]["startCursor"] is None
    assert page["pageInfo"]["endCursor"] is None
    assert page["totalCount"] == 3


async def test_updating_a_session_moves_it_to_the_front_by_updated_at(
    api: ApiClient, database: Database
) -> None:
    ids = await create_many(api, 3)
    await set_times(
        database, {sid: BASE_TIME + timedelta(minutes=i) for i, sid in enumerate(ids)}, "updated_at"
    )

    await api.data(UPDATE_SESSION, {"id": ids[0], "input": {"name": "touched"}})

    newest = await listed_ids(api, first=1, orderBy={"field": "UPDATED_AT"})
    assert newest == [ids[0]]


async def test_listed_times_are_utc_milliseconds(api: ApiClient) -> None:
    await create(api)

    node = (await listing(api))["edges"][0]["node"]

    for value in (node["createdAt"], node["updatedAt"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value), value
