"""The phone number's credentials are write-only: accepted and stored, never returned."""

from __future__ import annotations

from typing import Any

import pytest

from storage import Database
from tests.api_client import ApiClient
from tests.operations import CREATE_SESSION, GET_SESSION, MESSAGE_FIELDS, SESSION_FIELDS

# Everything a session shows, its transcript included, for every way a session is returned.
EVERYTHING = """
  ...SessionFields
  messages(first: 500) {
    totalCount
    edges { cursor node { ...MessageFields } }
    nodes { ...MessageFields }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
"""
FRAGMENTS = SESSION_FIELDS + MESSAGE_FIELDS

GET_EVERYTHING = f"query Get($id: ID!) {{ session(id: $id) {{ {EVERYTHING} }} }}" + FRAGMENTS

LIST_EVERYTHING = (
    f"""
query List {{
  sessions(first: 10) {{
    totalCount
    edges {{ cursor node {{ id }} }}
    nodes {{ {EVERYTHING} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}
"""
    + FRAGMENTS
)

UPDATE_EVERYTHING = (
    f"""
mutation Update($id: ID!, $input: UpdateSessionInput!) {{
  updateSession(id: $id, input: $input) {{ {EVERYTHING} }}
}}
"""
    + FRAGMENTS
)

DELETE_EVERYTHING = (
    f"mutation Delete($id: ID!) {{ deleteSession(id: $id) {{ {EVERYTHING} }} }}" + FRAGMENTS
)

OUTPUT_FIELDS = """
query OutputFields {
  __schema { types { name kind fields { name } inputFields { name } } }
}
"""

AUTH_TOKEN = "auth-token-4f1c-never-returned"
API_KEY = "SK-api-key-8b2d-never-returned"
API_SECRET = "api-secret-c93e-never-returned"
HEADER_NAME = "X-Signature-e07a"
HEADER_VALUE = "header-value-51f6-never-returned"
SECRETS = [AUTH_TOKEN, API_KEY, API_SECRET, HEADER_NAME, HEADER_VALUE]
SECRET_FIELD_NAMES = {"twilioAuthToken", "twilioApiKey", "twilioApiSecret", "headers"}

PHONE_NUMBER: dict[str, Any] = {
    "twilioPhoneNumber": "+14155550100",
    "twilioAccountSid": "AC0123456789",
    "twilioAuthToken": AUTH_TOKEN,
    "twilioApiKey": API_KEY,
    "twilioApiSecret": API_SECRET,
    "name": "Main line",
    "server": {
        "url": "https://hooks.example.com/vapi",
        "timeoutSeconds": 20,
        "headers": {HEADER_NAME: HEADER_VALUE},
        "backoffPlan": {"type": "FIXED", "maxRetries": 2, "baseDelaySeconds": 1},
    },
    "fallbackDestination": {"number": {"number": "+14155550199"}},
    "hooks": [{"on": "call.ringing", "do": [{"type": "say", "exact": "Hi"}]}],
}
SESSION_INPUT: dict[str, Any] = {
    "name": "With secrets",
    "phoneNumber": PHONE_NUMBER,
    "customer": {"number": "+14155550123", "name": "Alice"},
    "assistant": {"name": "Ava", "model": {"provider": "openai", "model": "gpt-4o"}},
    "messages": [{"user": {"content": "Hello"}}, {"assistant": {"content": "Hi!"}}],
}


def assert_no_secret_in(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} appear in {text}"


async def create_with_secrets(api: ApiClient) -> str:
    """A session whose phone number carries every secret; returns its id."""
    created = await api.data(CREATE_SESSION, {"input": SESSION_INPUT})
    session_id: str = created["createSession"]["id"]
    return session_id


async def test_create_response_holds_no_secret(api: ApiClient) -> None:
    response = await api.post(CREATE_SESSION, {"input": SESSION_INPUT})

    assert response.json()["data"]["createSession"]["phoneNumber"]["twilioAuthTokenSet"] is True
    assert_no_secret_in(response.text)


async def test_reading_every_field_of_a_session_returns_no_secret(api: ApiClient) -> None:
    session_id = await create_with_secrets(api)

    response = await api.post(GET_EVERYTHING, {"id": session_id})

    assert response.json()["data"]["session"]["phoneNumber"]["server"]["headersSet"] is True
    assert_no_secret_in(response.text)


async def test_listing_sessions_returns_no_secret(api: ApiClient) -> None:
    session_id = await create_with_secrets(api)

    response = await api.post(LIST_EVERYTHING)

    assert [node["id"] for node in response.json()["data"]["sessions"]["nodes"]] == [session_id]
    assert_no_secret_in(response.text)


async def test_update_response_holds_no_secret(api: ApiClient) -> None:
    session_id = await create_with_secrets(api)

    response = await api.post(UPDATE_EVERYTHING, {"id": session_id, "input": {"name": "Renamed"}})

    assert response.json()["data"]["updateSession"]["name"] == "Renamed"
    assert_no_secret_in(response.text)


async def test_delete_response_holds_no_secret(api: ApiClient) -> None:
    session_id = await create_with_secrets(api)

    response = await api.post(DELETE_EVERYTHING, {"id": session_id})

    assert response.json()["data"]["deleteSession"]["id"] == session_id
    assert_no_secret_in(response.text)


@pytest.mark.parametrize(
    ("secrets", "flags"),
    [
        pytest.param({}, (False, False, False, False), id="none"),
        pytest.param({"twilioAuthToken": AUTH_TOKEN}, (True, False, False, False), id="auth-token"),
        pytest.param(
            {"twilioApiKey": API_KEY, "twilioApiSecret": API_SECRET},
            (False, True, True, False),
            id="api-key-and-secret",
        ),
        pytest.param(
            {
                "server": {
                    "url": "https://hooks.example.com",
                    "headers": {HEADER_NAME: HEADER_VALUE},
                }
            },
            (False, False, False, True),
            id="server-headers",
        ),
        pytest.param(
            {"twilioAuthToken": None, "twilioApiKey": None, "twilioApiSecret": None},
            (False, False, False, False),
            id="explicit-nulls",
        ),
        pytest.param(
            {
                key: PHONE_NUMBER[key]
                for key in ("twilioAuthToken", "twilioApiKey", "twilioApiSecret", "server")
            },
            (True, True, True, True),
            id="all",
        ),
    ],
)
async def test_set_flags_say_which_secrets_are_stored(
    api: ApiClient, secrets: dict[str, Any], flags: tuple[bool, bool, bool, bool]
) -> None:
    phone_number = {"twilioPhoneNumber": "+14155550100", "twilioAccountSid": "AC1", **secrets}
    created = await api.data(CREATE_SESSION, {"input": {"phoneNumber": phone_number}})

    session = (await api.data(GET_SESSION, {"id": created["createSession"]["id"]}))["session"]

    phone = session["phoneNumber"]
    headers_set = phone["server"] is not None and phone["server"]["headersSet"]
    assert (
        phone["twilioAuthTokenSet"],
        phone["twilioApiKeySet"],
        phone["twilioApiSecretSet"],
        headers_set,
    ) == flags


async def test_secrets_are_input_fields_only(api: ApiClient) -> None:
    types = (await api.data(OUTPUT_FIELDS))["__schema"]["types"]

    output_fields = {
        (t["name"], f["name"])
        for t in types
        if t["kind"] in ("OBJECT", "INTERFACE")
        for f in t["fields"]
    }
    assert not {(t, f) for t, f in output_fields if f in SECRET_FIELD_NAMES}
    by_name = {t["name"]: t for t in types}
    assert {f["name"] for f in by_name["PhoneNumberInput"]["inputFields"]} >= {
        "twilioAuthToken",
        "twilioApiKey",
        "twilioApiSecret",
    }
    assert "headers" in {f["name"] for f in by_name["ServerInput"]["inputFields"]}


async def test_secrets_are_stored_apart_from_the_public_phone_number(
    api: ApiClient, database: Database
) -> None:
    session_id = await create_with_secrets(api)

    stored = await database.sessions.find_one({"_id": session_id})

    assert stored is not None
    assert stored["phone_number_secrets"] == {
        "twilioAuthToken": AUTH_TOKEN,
        "twilioApiKey": API_KEY,
        "twilioApiSecret": API_SECRET,
        "serverHeaders": {HEADER_NAME: HEADER_VALUE},
    }
    assert "headers" not in stored["phone_number"]["server"]
    public = {key: value for key, value in stored.items() if key != "phone_number_secrets"}
    assert_no_secret_in(repr(public))
