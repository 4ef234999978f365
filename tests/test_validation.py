"""Input validation: every constraint rejects with BAD_USER_INPUT, names the field and the
value it refused, and the rejected call changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from storage import Database
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.operations import (
    ADD_MESSAGES,
    CREATE_SESSION,
    CREATE_SESSION_ID,
    GET_SESSION,
    LIST_SESSIONS,
    TRANSCRIPT,
    UPDATE_SESSION,
)

LIST_ORDERED = """
query ListOrdered($first: Int, $after: String, $orderBy: SessionOrder) {
  sessions(first: $first, after: $after, orderBy: $orderBy) { edges { cursor } }
}
"""

TOO_LONG_CONTENT = "c" * 10_001
PHONE_NUMBER = {"twilioPhoneNumber": "+14155550100", "twilioAccountSid": "AC0123456789"}
HOOK_URL = "https://hooks.example.com/vapi"


def phone_number(**fields: Any) -> dict[str, Any]:
    """A create input with a valid phone number, changed by `fields`."""
    return {"phoneNumber": {**PHONE_NUMBER, **fields}}


def server(**fields: Any) -> dict[str, Any]:
    """A create input whose phone number has a valid server, changed by `fields`."""
    return phone_number(server={"url": HOOK_URL, **fields})


def tool_call(name: str = "lookup", arguments: str = "{}") -> dict[str, Any]:
    """An assistant message calling one function."""
    call = {"id": "call-1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"assistant": {"toolCalls": [call]}}


def assert_bad_input(error: dict[str, Any], path: str, shown: str) -> None:
    """The error is BAD_USER_INPUT and says `path = <value>`, the value beginning `shown`."""
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert f"{path} = {shown}" in error["message"], error["message"]
    assert path in error["extensions"]["fields"], error


async def sessions_of(database: Database, org_id: str) -> int:
    """How many sessions the organization has stored."""
    count: int = await database.sessions.count_documents({"org_id": org_id})
    return count


async def stored_transcript(database: Database, session_id: str) -> list[dict[str, Any]]:
    """The session's stored messages in seq order."""
    cursor = database.messages.find({"session_id": session_id}).sort("seq", 1)
    messages: list[dict[str, Any]] = await cursor.to_list(None)
    return messages


# Inputs a constraint rejects: (input, field path, the value as the message shows it or begins
# it). The session's own fields are checked alike on create and on update.
SESSION_CASES = [
    pytest.param({"name": "n" * 41}, "input.name", "'" + "n" * 41, id="name-over-40"),
    pytest.param({"expirationSeconds": 59}, "input.expirationSeconds", "59", id="expiration-59"),
    pytest.param(
        {"expirationSeconds": 2_592_001},
        "input.expirationSeconds",
        "2592001",
        id="expiration-over-30-days",
    ),
]
MESSAGE_CASES = [
    pytest.param(
        {"messages": [{"user": {"content": TOO_LONG_CONTENT}}]},
        "input.messages[0].user.content",
        "'cccccccccc",
        id="message-content-over-10000",
    ),
    pytest.param(
        {"messages": [{"user": {"content": "hi"}}, {"assistant": {"refusal": TOO_LONG_CONTENT}}]},
        "input.messages[1].assistant.refusal",
        "'cccccccccc",
        id="assistant-refusal-over-10000",
    ),
    pytest.param(
        {"messages": [tool_call(name="f" * 41)]},
        "input.messages[0].assistant.toolCalls[0].function.name",
        "'" + "f" * 41,
        id="tool-call-function-name-over-40",
    ),
    pytest.param(
        {"messages": [tool_call(arguments="{not json")]},
        "input.messages[0].assistant.toolCalls[0].function.arguments",
        "'{not json'",
        id="tool-call-arguments-not-json",
    ),
    pytest.param(
        {"messages": [{"system": {"time": 1.5}}]},
        "input.messages[0].system",
        "{'time': 1.5}",
        id="system-message-without-text",
    ),
]
CUSTOMER_CASES = [
    pytest.param(
        {"customer": {"number": "14155550123"}},
        "input.customer.number",
        "'14155550123'",
        id="customer-number-not-e164",
    ),
    pytest.param(
        {"customer": {"number": "123 45", "numberE164CheckEnabled": False}},
        "input.customer.number",
        "'123 45'",
        id="unchecked-customer-number-with-space",
    ),
    pytest.param(
        {"customer": {"number": "123-45", "numberE164CheckEnabled": False}},
        "input.customer.number",
        "'123-45'",
        id="unchecked-customer-number-with-dash",
    ),
    pytest.param(
        {"customer": {"number": "12", "numberE164CheckEnabled": False}},
        "input.customer.number",
        "'12'",
        id="customer-number-under-3",
    ),
    pytest.param(
        {"customer": {"number": "1" * 41, "numberE164CheckEnabled": False}},
        "input.customer.number",
        "'" + "1" * 41,
        id="customer-number-over-40",
    ),
    pytest.param(
        {"customer": {"extension": "12345678901"}},
        "input.customer.extension",
        "'12345678901'",
        id="customer-extension-over-10",
    ),
    pytest.param(
        {"customer": {"email": "alice.example.com"}},
        "input.customer.email",
        "'alice.example.com'",
        id="customer-email-malformed",
    ),
]
PHONE_NUMBER_CASES = [
    pytest.param(
        server(timeoutSeconds=0),
        "input.phoneNumber.server.timeoutSeconds",
        "0.0",
        id="server-timeout-0",
    ),
    pytest.param(
        server(timeoutSeconds=301),
        "input.phoneNumber.server.timeoutSeconds",
        "301.0",
        id="server-timeout-301",
    ),
    pytest.param(
        server(backoffPlan={"type": "FIXED", "maxRetries": 11, "baseDelaySeconds": 1}),
        "input.phoneNumber.server.backoffPlan.maxRetries",
        "11",
        id="backoff-max-retries-11",
    ),
]
ASSISTANT_CASES = [
    pytest.param(
        {"assistant": {"maxDurationSeconds": 9}},
        "input.assistant.maxDurationSeconds",
        "9",
        id="max-duration-9",
    ),
    pytest.param(
        {"assistant": {"maxDurationSeconds": 43_201}},
        "input.assistant.maxDurationSeconds",
        "43201",
        id="max-duration-over-12-hours",
    ),
    pytest.param(
        {"assistant": {"clientMessages": ["transcript", "everything"]}},
        "input.assistant.clientMessages[1]",
        "'everything'",
        id="client-message-not-allowed",
    ),
    pytest.param(
        {"assistant": {"endCallPhrases": ["goodbye", "k"]}},
        "input.assistant.endCallPhrases[1]",
        "'k'",
        id="end-call-phrase-of-1-char",
    ),
    pytest.param(
        {"assistant": {"model": {"model": "gpt-4o"}}},
        "input.assistant.model",
        "{'model': 'gpt-4o'}",
        id="model-without-provider",
    ),
    pytest.param(
        {"assistant": {"firstMessage": "Hi", "config": {"firstMessage": "Hello"}}},
        "input.assistant.config",
        "{'firstMessage': 'Hello'}",
        id="config-repeats-typed-field",
    ),
    pytest.param(
        {"assistant": {"backgroundSound": "jazz"}},
        "input.assistant.backgroundSound",
        "'jazz'",
        id="background-sound-not-off-office-or-url",
    ),
]


@pytest.mark.parametrize(
    ("fields", "path", "shown"),
    SESSION_CASES + MESSAGE_CASES + CUSTOMER_CASES + PHONE_NUMBER_CASES + ASSISTANT_CASES,
)
async def test_invalid_create_input_is_rejected_naming_field_and_value_and_stores_nothing(
    api: ApiClient,
    org: tuple[str, str],
    database: Database,
    fields: dict[str, Any],
    path: str,
    shown: str,
) -> None:
    before = await sessions_of(database, org[0])

    error = await api.error(CREATE_SESSION_ID, {"input": fields})

    assert_bad_input(error, path, shown)
    assert await sessions_of(database, org[0]) == before
    assert await database.messages.count_documents({"org_id": org[0]}) == 0


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"expirationSeconds": 60}, id="expiration-60"),
        pytest.param({"expirationSeconds": 2_592_000}, id="expiration-30-days"),
        pytest.param({"name": "n" * 40}, id="name-of-40"),
        pytest.param(
            {"customer": {"number": "1" * 40, "numberE164CheckEnabled": False}},
            id="customer-number-of-40",
        ),
        pytest.param({"customer": {"extension": "1234567890"}}, id="customer-extension-of-10"),
        pytest.param(server(timeoutSeconds=1), id="server-timeout-1"),
        pytest.param(server(timeoutSeconds=300), id="server-timeout-300"),
        pytest.param(
            server(backoffPlan={"type": "FIXED", "maxRetries": 10, "baseDelaySeconds": 1}),
            id="backoff-max-retries-10",
        ),
        pytest.param({"assistant": {"maxDurationSeconds": 10}}, id="max-duration-10"),
        pytest.param({"assistant": {"maxDurationSeconds": 43_200}}, id="max-duration-12-hours"),
        pytest.param({"assistant": {"endCallPhrases": ["ok"]}}, id="end-call-phrase-of-2"),
        pytest.param({"assistant": {"backgroundSound": "off"}}, id="background-sound-off"),
        pytest.param(
            {"assistant": {"backgroundSound": "https://cdn.example.com/cafe.mp3"}},
            id="background-sound-url",
        ),
        pytest.param(
            {"messages": [{"user": {"content": "c" * 10_000}}]}, id="message-content-of-10000"
        ),
    ],
)
async def test_values_at_the_limits_are_accepted(
    api: ApiClient, org: tuple[str, str], database: Database, fields: dict[str, Any]
) -> None:
    created = (await api.data(CREATE_SESSION_ID, {"input": fields}))["createSession"]

    assert await database.sessions.count_documents({"_id": created["id"], "org_id": org[0]}) == 1


async def test_unchecked_customer_number_is_kept_as_sent(api: ApiClient) -> None:
    customer = {"number": "12345abc", "numberE164CheckEnabled": False}

    created = (await api.data(CREATE_SESSION, {"input": {"customer": customer}}))["createSession"]

    assert created["customer"]["number"] == "12345abc"
    assert created["customer"]["numberE164CheckEnabled"] is False


@pytest.mark.parametrize(("changes", "path", "shown"), SESSION_CASES)
async def test_invalid_update_is_rejected_naming_field_and_value_and_changes_nothing(
    api: ApiClient, changes: dict[str, Any], path: str, shown: str
) -> None:
    session_id = await create_session(api, name="before", expirationSeconds=900)
    before = await api.data(GET_SESSION, {"id": session_id})

    error = await api.error(UPDATE_SESSION, {"id": session_id, "input": changes})

    assert_bad_input(error, path, shown)
    assert await api.data(GET_SESSION, {"id": session_id}) == before


@pytest.mark.parametrize("seconds", [60, 2_592_000])
async def test_update_accepts_expiration_seconds_at_the_limits(
    api: ApiClient, seconds: int
) -> None:
    session_id = await create_session(api)

    updated = await api.data(
        UPDATE_SESSION, {"id": session_id, "input": {"expirationSeconds": seconds}}
    )

    assert updated["updateSession"]["expirationSeconds"] == seconds


@pytest.mark.parametrize(
    ("messages", "key", "path", "shown"),
    [
        pytest.param(
            [{"user": {"content": TOO_LONG_CONTENT}}],
            None,
            "messages[0].user.content",
            "'cccccccccc",
            id="content-over-10000",
        ),
        pytest.param(
            [{"assistant": {"refusal": TOO_LONG_CONTENT}}],
            None,
            "messages[0].assistant.refusal",
            "'cccccccccc",
            id="refusal-over-10000",
        ),
        pytest.param(
            [tool_call(name="f" * 41)],
            None,
            "messages[0].assistant.toolCalls[0].function.name",
            "'" + "f" * 41,
            id="tool-call-function-name-over-40",
        ),
        pytest.param(
            [tool_call(arguments="city=Paris")],
            None,
            "messages[0].assistant.toolCalls[0].function.arguments",
            "'city=Paris'",
            id="tool-call-arguments-not-json",
        ),
        pytest.param(
            [{"system": {"secondsFromStart": 2.5}}],
            None,
            "messages[0].system",
            "{'secondsFromStart': 2.5}",
            id="system-message-without-content-or-message",
        ),
        pytest.param(
            [{"user": {"content": "fine"}}, {"user": {"duration": 2.0}}],
            None,
            "messages[1].user",
            "{'duration': 2.0}",
            id="user-message-without-content-or-message",
        ),
        pytest.param([], None, "messages", "[]", id="no-messages"),
        pytest.param(
            [{"user": {"content": "x"}}] * 101,
            None,
            "messages",
            "[{'user': {'content': 'x'}}",
            id="101-messages",
        ),
        pytest.param(
            [{"user": {"content": "x"}}],
            "k" * 201,
            "idempotencyKey",
            "'kkkkkkkkkk",
            id="idempotency-key-over-200",
        ),
    ],
)
async def test_invalid_messages_are_rejected_naming_field_and_value_and_append_nothing(
    api: ApiClient,
    database: Database,
    messages: list[dict[str, Any]],
    key: str | None,
    path: str,
    shown: str,
) -> None:
    session_id = await create_session(api, messages=[{"user": {"content": "first"}}])
    before = await stored_transcript(database, session_id)

    error = await api.error(
        ADD_MESSAGES, {"sessionId": session_id, "messages": messages, "key": key}
    )

    assert_bad_input(error, path, shown)
    session = (await api.data(GET_SESSION, {"id": session_id}))["session"]
    assert session["messageCount"] == 1
    assert await stored_transcript(database, session_id) == before


async def test_add_messages_accepts_100_messages_and_a_200_character_key(api: ApiClient) -> None:
    session_id = await create_session(api)

    added = await api.data(
        ADD_MESSAGES,
        {"sessionId": session_id, "messages": [{"user": {"content": "x"}}] * 100, "key": "k" * 200},
    )

    assert [m["seq"] for m in added["addMessages"]] == list(range(1, 101))


# GraphQL itself rejects these while coercing the variables, before any resolver runs. They
# carry extensions.code BAD_USER_INPUT, like the constraints above, and the operation does
# not run (the response has no `data`). Their messages are graphql-core's: the variable, the
# path within it, and the value.
@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        pytest.param(
            {"messages": [{"tool": {"content": "done"}}]},
            ["$input", ".messages[0].tool", "'toolCallId'"],
            id="tool-message-without-tool-call-id",
        ),
        pytest.param(
            {"phoneNumber": {"twilioPhoneNumber": "+14155550100"}},
            ["$input", ".phoneNumber", "'twilioAccountSid'"],
            id="phone-number-without-account-sid",
        ),
        pytest.param(
            {"assistant": {"firstMessageMode": "ASSISTANT_SINGS_FIRST"}},
            ["$input", ".assistant.firstMessageMode", "'ASSISTANT_SINGS_FIRST'"],
            id="first-message-mode-not-in-enum",
        ),
        pytest.param(
            {"status": "PAUSED"}, ["$input", ".status", "'PAUSED'"], id="status-not-in-enum"
        ),
        # Strawberry's @oneOf check names the type but neither the path nor the value.
        pytest.param(
            {"messages": [{"user": {"content": "a"}, "system": {"content": "b"}}]},
            ["MessageInput", "exactly one"],
            id="message-with-two-roles",
        ),
    ],
)
async def test_create_input_of_the_wrong_graphql_shape_is_bad_user_input_and_stores_nothing(
    api: ApiClient,
    org: tuple[str, str],
    database: Database,
    fields: dict[str, Any],
    fragments: list[str],
) -> None:
    before = await sessions_of(database, org[0])

    body = await api.execute(CREATE_SESSION_ID, {"input": fields})

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert all(fragment in error["message"] for fragment in fragments), error["message"]
    assert "data" not in body
    assert await sessions_of(database, org[0]) == before


@pytest.mark.parametrize(
    ("messages", "fragments"),
    [
        pytest.param(
            [{"user": {"content": "ok"}}, {"tool": {"content": "done"}}],
            ["$messages", "[1].tool", "'toolCallId'"],
            id="tool-message-without-tool-call-id",
        ),
        pytest.param(
            [{"user": {"content": "a"}, "assistant": {"content": "b"}}],
            ["MessageInput", "exactly one"],
            id="message-with-two-roles",
        ),
    ],
)
async def test_messages_of_the_wrong_graphql_shape_are_bad_user_input_and_append_nothing(
    api: ApiClient, database: Database, messages: list[dict[str, Any]], fragments: list[str]
) -> None:
    session_id = await create_session(api, messages=[{"user": {"content": "first"}}])
    before = await stored_transcript(database, session_id)

    body = await api.execute(ADD_MESSAGES, {"sessionId": session_id, "messages": messages})

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert all(fragment in error["message"] for fragment in fragments), error["message"]
    assert (await api.data(GET_SESSION, {"id": session_id}))["session"]["messageCount"] == 1
    assert await stored_transcript(database, session_id) == before


# Secrets -----------------------------------------------------------------------------------


async def test_empty_auth_token_is_rejected_without_echoing_it(api: ApiClient) -> None:
    error = await api.error(CREATE_SESSION_ID, {"input": phone_number(twilioAuthToken="")})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["input.phoneNumber.twilioAuthToken"]
    assert "input.phoneNumber.twilioAuthToken = (hidden)" in error["message"]
    assert "''" not in error["message"]


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        pytest.param(
            phone_number(twilioAuthToken="auth-token-too-long-" + "a" * 100),
            "auth-token-too-long-",
            id="auth-token-over-100",
        ),
        pytest.param(
            phone_number(twilioApiKey="api-key-too-long-" + "k" * 100),
            "api-key-too-long-",
            id="api-key-over-100",
        ),
        pytest.param(
            phone_number(twilioApiSecret="api-secret-too-long-" + "s" * 100),
            "api-secret-too-long-",
            id="api-secret-over-100",
        ),
        pytest.param(
            server(headers={"X-Api-Key": ["header-secret-in-a-list"]}),
            "header-secret-in-a-list",
            id="server-header-not-a-string",
        ),
        # Rejected by GraphQL's variable coercion rather than by a constraint.
        pytest.param(
            phone_number(twilioAuthToken=918273645),
            "918273645",
            id="auth-token-not-a-string",
        ),
        pytest.param(
            {
                "phoneNumber": {
                    "twilioPhoneNumber": "+14155550100",
                    "twilioAuthToken": "auth-token-beside-a-missing-sid",
                    "twilioApiSecret": "api-secret-beside-a-missing-sid",
                }
            },
            "-beside-a-missing-sid",
            id="secrets-beside-a-missing-account-sid",
        ),
    ],
)
async def test_invalid_phone_number_is_rejected_without_echoing_secrets(
    api: ApiClient, fields: dict[str, Any], secret: str
) -> None:
    response = await api.post(CREATE_SESSION_ID, {"input": fields})

    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "(hidden)" in response.json()["errors"][0]["message"]
    assert secret not in response.text


# Paging arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "fields", "fragments"),
    [
        pytest.param({"first": 101}, ["first"], ["first = 101", "0 and 100"], id="first-101"),
        pytest.param({"first": -1}, ["first"], ["first = -1", "0 and 100"], id="first-negative"),
        pytest.param({"last": 101}, ["last"], ["last = 101", "0 and 100"], id="last-101"),
        pytest.param(
            {"first": 5, "last": 5}, ["first", "last"], ["first", "last"], id="first-and-last"
        ),
        pytest.param(
            {"after": "not-a-cursor"}, ["after"], ["after = 'not-a-cursor'"], id="garbage-after"
        ),
        pytest.param(
            {"last": 5, "before": "%%%"}, ["before"], ["before = '%%%'"], id="garbage-before"
        ),
        pytest.param(
            {"filter": {"idAny": [f"id-{n}" for n in range(101)]}},
            ["filter.idAny"],
            ["filter.idAny", "101"],
            id="id-any-with-101-ids",
        ),
    ],
)
async def test_invalid_session_list_arguments_are_rejected(
    api: ApiClient, variables: dict[str, Any], fields: list[str], fragments: list[str]
) -> None:
    error = await api.error(LIST_SESSIONS, variables)

    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["fields"] == fields
    assert all(fragment in error["message"] for fragment in fragments), error["message"]


async def test_session_cursor_is_rejected_under_a_different_order(api: ApiClient) -> None:
    await create_session(api)
    by_creation = {"field": "CREATED_AT", "direction": "DESC"}
    [edge] = (await api.data(LIST_ORDERED, {"first": 1, "orderBy": by_creation}))["sessions"][
        "edges"
    ]

    error = await api.error(
        LIST_ORDERED,
        {"after": edge["cursor"], "orderBy": {"field": "UPDATED_AT", "direction": "DESC"}},
    )

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["after"]
    message = error["message"].lower()
    assert "created_at" in message
    assert "updated_at" in message


@pytest.mark.parametrize(
    ("variables", "fields", "fragments"),
    [
        pytest.param({"first": 501}, ["first"], ["first = 501", "0 and 500"], id="first-501"),
        pytest.param(
            {"first": 1, "last": 1}, ["first", "last"], ["first", "last"], id="first-and-last"
        ),
        pytest.param(
            {"after": "not-a-cursor"}, ["after"], ["after = 'not-a-cursor'"], id="garbage-after"
        ),
    ],
)
async def test_invalid_transcript_arguments_are_rejected(
    api: ApiClient, variables: dict[str, Any], fields: list[str], fragments: list[str]
) -> None:
    session_id = await create_session(api)

    error = await api.error(TRANSCRIPT, {"id": session_id, **variables})

    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["path"] == ["session", "messages"]
    assert error["extensions"]["fields"] == fields
    assert all(fragment in error["message"] for fragment in fragments), error["message"]
