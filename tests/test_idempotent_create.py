"""createSession with an idempotencyKey: a retry returns the first session, never a second."""

from __future__ import annotations

import asyncio
from typing import Any

from resolvers.errors import from_storage
from storage import Database, IdempotencyKeyPending, SessionStore
from tests.api_client import ApiClient
from tests.factories import message_record, session_record

CREATE = """
mutation Create($input: CreateSessionInput!, $key: String) {
  createSession(input: $input, idempotencyKey: $key) {
    id name messageCount messages { nodes { seq content } }
  }
}
"""
NAMED = """
query Named($name: String!) { sessions(filter: {name: $name}) { totalCount nodes { id } } }
"""
DELETE = "mutation Delete($id: ID!) { deleteSession(id: $id) { id } }"

INPUT: dict[str, Any] = {
    "name": "retried",
    "expirationSeconds": 3600,
    "messages": [{"system": {"content": "be brief"}}, {"user": {"content": "hello"}}],
}
CONCURRENT_RETRIES = 20


async def create(api: ApiClient, key: str | None, **changes: Any) -> dict[str, Any]:
    body = await api.execute(CREATE, {"input": {**INPUT, **changes}, "key": key})
    return body


async def created(api: ApiClient, key: str | None, **changes: Any) -> dict[str, Any]:
    body = await create(api, key, **changes)
    assert "errors" not in body, body
    session: dict[str, Any] = body["data"]["createSession"]
    return session


async def stored_ids(api: ApiClient, name: str) -> list[str]:
    """The ids of the organization's sessions called `name`, read back through the API."""
    data = await api.data(NAMED, {"name": name})
    ids = [node["id"] for node in data["sessions"]["nodes"]]
    assert data["sessions"]["totalCount"] == len(ids)
    return ids


async def test_a_retry_with_the_same_key_and_input_returns_the_first_session(
    api: ApiClient,
) -> None:
    first = await created(api, "create-1")

    again = await created(api, "create-1")

    assert again == first
    assert [m["content"] for m in again["messages"]["nodes"]] == ["be brief", "hello"]
    assert await stored_ids(api, "retried") == [first["id"]]


async def test_the_same_input_written_in_another_order_is_the_same_request(
    api: ApiClient,
) -> None:
    first = await created(api, "create-2", status="ACTIVE")

    reordered = {"messages": INPUT["messages"], "expirationSeconds": 3600, "name": "retried"}
    body = await api.execute(CREATE, {"input": reordered, "key": "create-2"})

    assert body["data"]["createSession"]["id"] == first["id"]


async def test_the_same_key_with_another_input_is_a_conflict_naming_the_key(
    api: ApiClient,
) -> None:
    first = await created(api, "create-3")

    body = await create(api, "create-3", name="something else")

    [error] = body["errors"]
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["idempotencyKey"] == "create-3"
    assert "'create-3'" in error["message"]
    assert "createSession" in error["message"]
    assert body["data"] is None
    assert await stored_ids(api, "something else") == []
    assert await stored_ids(api, "retried") == [first["id"]]


async def test_without_a_key_every_call_creates_a_session(api: ApiClient) -> None:
    first = await created(api, None)
    second = await created(api, None)

    assert first["id"] != second["id"]
    assert sorted(await stored_ids(api, "retried")) == sorted([first["id"], second["id"]])


async def test_keys_belong_to_one_organization(api: ApiClient, other_api: ApiClient) -> None:
    mine = await created(api, "shared-key")

    theirs = await created(other_api, "shared-key")

    assert theirs["id"] != mine["id"]
    assert await stored_ids(api, "retried") == [mine["id"]]
    assert await stored_ids(other_api, "retried") == [theirs["id"]]


async def test_an_add_messages_key_is_not_a_create_session_key(api: ApiClient) -> None:
    session = await created(api, "one-key")
    add = """
    mutation Add($id: ID!, $key: String) {
      addMessages(sessionId: $id, messages: [{user: {content: "more"}}], idempotencyKey: $key) {
        seq
      }
    }
    """

    appended = await api.data(add, {"id": session["id"], "key": "one-key"})

    assert [m["seq"] for m in appended["addMessages"]] == [3]
    assert (await created(api, "one-key"))["id"] == session["id"]


async def test_concurrent_retries_with_one_key_create_one_session(api: ApiClient) -> None:
    bodies = await asyncio.gather(
        *(create(api, "concurrent", name="raced") for _ in range(CONCURRENT_RETRIES))
    )

    ids = {body["data"]["createSession"]["id"] for body in bodies if "errors" not in body}
    assert all("errors" not in body for body in bodies), [b.get("errors") for b in bodies]
    assert len(ids) == 1
    assert await stored_ids(api, "raced") == list(ids)
    [session_id] = ids
    messages = (await created(api, "concurrent", name="raced"))["messages"]["nodes"]
    assert [m["seq"] for m in messages] == [1, 2]
    assert session_id in await stored_ids(api, "raced")


async def test_after_the_session_is_deleted_its_key_creates_a_new_one(api: ApiClient) -> None:
    first = await created(api, "deleted")
    await api.data(DELETE, {"id": first["id"]})

    second = await created(api, "deleted")

    assert second["id"] != first["id"]
    assert await stored_ids(api, "retried") == [second["id"]]


async def test_an_empty_key_is_refused_naming_it(api: ApiClient) -> None:
    body = await create(api, "")

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["idempotencyKey"]
    assert "idempotencyKey = ''" in error["message"]
    assert await stored_ids(api, "retried") == []


async def test_invalid_input_with_a_key_stores_nothing_and_keeps_the_key_free(
    api: ApiClient,
) -> None:
    body = await create(api, "fix-and-retry", expirationSeconds=1)
    assert body["errors"][0]["extensions"]["fields"] == ["input.expirationSeconds"]

    session = await created(api, "fix-and-retry")

    assert await stored_ids(api, "retried") == [session["id"]]


async def test_concurrent_keyed_creates_without_transactions_store_one_session(
    database: Database, org: tuple[str, str]
) -> None:
    # A standalone server has no transactions: the key's record is inserted first and the
    # losers of the race read the winner's session back.
    plain = Database(database.client, database.db.name, supports_transactions=False)
    store = SessionStore(plain)
    org_id = org[0]

    results = await asyncio.gather(
        *(
            store.create(
                org_id, session_record(name="standalone"), [message_record("a")], "plain-key"
            )
            for _ in range(CONCURRENT_RETRIES)
        ),
        return_exceptions=True,
    )

    sessions = [r[0] for r in results if isinstance(r, tuple)]
    # A loser that looks while the winner is between its two inserts is told to retry.
    pending = [r for r in results if not isinstance(r, tuple)]
    assert all(isinstance(error, IdempotencyKeyPending) for error in pending), pending
    assert len({s["id"] for s in sessions}) == 1
    stored = await plain.sessions.count_documents({"org_id": org_id, "name": "standalone"})
    assert stored == 1


def phone(token: str) -> dict[str, Any]:
    return {
        "twilioPhoneNumber": "+14155550100",
        "twilioAccountSid": "AC123",
        "twilioAuthToken": token,
    }


async def test_a_retry_must_repeat_the_write_only_secrets_too(api: ApiClient) -> None:
    first = await created(api, "with-secrets", phoneNumber=phone("token-one"))

    same = await created(api, "with-secrets", phoneNumber=phone("token-one"))
    other = await create(api, "with-secrets", phoneNumber=phone("token-two"))
    without = await create(api, "with-secrets")

    assert same["id"] == first["id"]
    for body in (other, without):
        [error] = body["errors"]
        assert error["extensions"]["code"] == "CONFLICT"
        assert "token-" not in error["message"]
    assert await stored_ids(api, "retried") == [first["id"]]


async def test_the_idempotency_record_holds_no_secret(
    api: ApiClient, database: Database, org: tuple[str, str]
) -> None:
    await created(api, "secret-free", phoneNumber=phone("token-kept-out"))
    one = await created(api, "secret-free-2", phoneNumber=phone("token-kept-out"))
    other = await created(api, "secret-free-3", phoneNumber=phone("another-token"))

    records = await database.idempotency.find({"org_id": org[0]}).to_list(None)

    assert len(records) == 3
    assert "token-kept-out" not in repr(records)
    # The digest leaves the secrets out: equal for inputs that differ only in them.
    digests = {r["session_id"]: r["digest"] for r in records}
    assert digests[one["id"]] == digests[other["id"]]


def test_a_key_whose_first_request_is_still_writing_is_answered_retry_shortly() -> None:
    error = from_storage(IdempotencyKeyPending("k"))

    assert error.extensions == {"code": "SERVICE_UNAVAILABLE", "idempotencyKey": "k"}
    assert "retry shortly" in error.message
