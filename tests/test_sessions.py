"""Creating, reading, updating and deleting sessions through the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from storage import Database
from tests.api_client import ApiClient
from tests.operations import (
    ADD_MESSAGES,
    CREATE_SESSION,
    CREATE_SESSION_ID,
    DELETE_SESSION,
    GET_SESSION,
    TRANSCRIPT,
    UPDATE_SESSION,
)

FULL_INPUT: dict[str, Any] = {
    "name": "Support call",
    "status": "ACTIVE",
    "expirationSeconds": 3600,
    "assistantId": "asst-123",
    "assistant": {
        "name": "Ava",
        "firstMessage": "Hello, how can I help?",
        "firstMessageMode": "ASSISTANT_SPEAKS_FIRST",
        "maxDurationSeconds": 600,
        "backgroundSound": "office",
        "voicemailMessage": "Please call back.",
        "endCallMessage": "Goodbye!",
        "endCallPhrases": ["bye now", "that is all"],
        "clientMessages": ["transcript", "tool-calls"],
        "serverMessages": ["end-of-call-report", 'transcript[transcriptType="final"]'],
        "metadata": {"team": "support", "tier": 2},
        "model": {"provider": "openai", "model": "gpt-4o", "temperature": 0.2},
        "voice": {"provider": "11labs", "voiceId": "burt"},
        "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "en"},
        "config": {
            "silenceTimeoutSeconds": 30,
            "analysisPlan": {"summaryPlan": {"enabled": True}},
        },
    },
    "customer": {
        "number": "+14155550123",
        "extension": "42",
        "sipUri": "sip:alice@example.com",
        "name": "Alice",
        "email": "alice@example.com",
        "externalId": "crm-7",
        "assistantOverrides": {"firstMessage": "Hi Alice"},
    },
    "phoneNumberId": "pn-9",
    "phoneNumber": {
        "twilioPhoneNumber": "+14155550100",
        "twilioAccountSid": "AC0123456789",
        "twilioAuthToken": "auth-token-secret-value",
        "twilioApiKey": "SK-api-key-secret-value",
        "twilioApiSecret": "api-secret-secret-value",
        "name": "Main line",
        "assistantId": "asst-123",
        "squadId": "squad-1",
        "workflowId": "wf-1",
        "smsEnabled": False,
        "server": {
            "url": "https://hooks.example.com/vapi",
            "timeoutSeconds": 20,
            "headers": {"X-Secret": "header-secret-value"},
            "backoffPlan": {"type": "EXPONENTIAL", "maxRetries": 3, "baseDelaySeconds": 1.5},
        },
        "fallbackDestination": {
            "number": {"number": "+14155550199", "callerId": "+14155550100", "message": "Hold on"}
        },
        "hooks": [{"on": "call.ringing", "do": [{"type": "say", "exact": "Hi"}]}],
    },
    "messages": [
        {"system": {"content": "You are helpful."}},
        {"user": {
            "message": "Hi there", "time": 1.5, "endTime": 2.5, "secondsFromStart": 0.5,
            "duration": 1.0,
        }},
        {"assistant": {"content": "Let me check.", "name": "Ava", "toolCalls": [{
            "id": "call-1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'},
        }]}},
        {"tool": {
            "content": "found it", "toolCallId": "call-1", "name": "lookup", "metadata": {"ms": 12},
        }},
        {"developer": {"content": "Be brief.", "name": "ops"}},
    ],
}  # fmt: skip


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_every_field_round_trips_through_create_and_get(
    api: ApiClient, org: tuple[str, str]
) -> None:
    created = (await api.data(CREATE_SESSION, {"input": FULL_INPUT}))["createSession"]
    fetched = (await api.data(GET_SESSION, {"id": created["id"]}))["session"]

    assert fetched == created
    assert fetched["orgId"] == org[0]
    assert fetched["name"] == "Support call"
    assert fetched["status"] == "ACTIVE"
    assert fetched["expirationSeconds"] == 3600
    assert _parse(fetched["expiresAt"]) - _parse(fetched["createdAt"]) == timedelta(hours=1)
    assert fetched["assistantId"] == "asst-123"
    assert fetched["phoneNumberId"] == "pn-9"
    assert fetched["messageCount"] == 5

    assistant = fetched["assistant"]
    assert assistant["firstMessageMode"] == "ASSISTANT_SPEAKS_FIRST"
    assert assistant["endCallPhrases"] == ["bye now", "that is all"]
    assert assistant["serverMessages"] == [
        "end-of-call-report",
        'transcript[transcriptType="final"]',
    ]
    assert assistant["model"] == {
        "provider": "openai",
        "name": "gpt-4o",
        "config": {"provider": "openai", "model": "gpt-4o", "temperature": 0.2},
    }
    assert assistant["voice"]["name"] == "burt"
    assert assistant["transcriber"]["config"]["language"] == "en"
    # The whole configuration is kept without loss, typed and untyped fields alike.
    sent = {k: v for k, v in FULL_INPUT["assistant"].items() if k != "config"}
    sent["firstMessageMode"] = "assistant-speaks-first"
    assert assistant["config"] == {**FULL_INPUT["assistant"]["config"], **sent}

    assert fetched["customer"] == {**FULL_INPUT["customer"], "numberE164CheckEnabled": True}

    phone = fetched["phoneNumber"]
    assert phone["twilioPhoneNumber"] == "+14155550100"
    assert phone["twilioAccountSid"] == "AC0123456789"
    assert (phone["twilioAuthTokenSet"], phone["twilioApiKeySet"], phone["twilioApiSecretSet"]) == (
        True,
        True,
        True,
    )
    assert phone["smsEnabled"] is False
    assert phone["server"] == {
        "url": "https://hooks.example.com/vapi",
        "timeoutSeconds": 20.0,
        "headersSet": True,
        "backoffPlan": {"type": "EXPONENTIAL", "maxRetries": 3, "baseDelaySeconds": 1.5},
    }
    assert phone["fallbackDestination"] == {
        "__typename": "NumberTransferDestination",
        "number": "+14155550199",
        "numberE164CheckEnabled": True,
        "extension": None,
        "callerId": "+14155550100",
        "message": "Hold on",
        "description": None,
    }
    assert phone["hooks"] == FULL_INPUT["phoneNumber"]["hooks"]


async def test_initial_messages_are_numbered_from_one_in_order(api: ApiClient) -> None:
    created = (await api.data(CREATE_SESSION, {"input": FULL_INPUT}))["createSession"]
    page = (await api.data(TRANSCRIPT, {"id": created["id"]}))["session"]["messages"]

    assert [(e["node"]["seq"], e["node"]["role"]) for e in page["edges"]] == [
        (1, "SYSTEM"), (2, "USER"), (3, "ASSISTANT"), (4, "TOOL"), (5, "DEVELOPER"),
    ]  # fmt: skip
    # A call-transcript record's text reads as its content.
    assert page["edges"][1]["node"]["content"] == "Hi there"


async def test_a_session_needs_no_fields_and_gets_defaults(api: ApiClient) -> None:
    created = (await api.data(CREATE_SESSION, {"input": {}}))["createSession"]

    assert created["status"] == "ACTIVE"
    assert created["expirationSeconds"] == 86_400
    assert created["name"] is None
    assert created["messageCount"] == 0
    assert created["assistant"] is None
    assert created["customer"] is None
    assert created["phoneNumber"] is None


async def test_session_of_unknown_id_is_null(api: ApiClient) -> None:
    assert (await api.data(GET_SESSION, {"id": "no-such-session"})) == {"session": None}


async def test_update_changes_name_status_and_recomputes_expiry(api: ApiClient) -> None:
    created = (await api.data(CREATE_SESSION_ID, {"input": {"name": "before"}}))["createSession"]

    updated = (
        await api.data(
            UPDATE_SESSION,
            {
                "id": created["id"],
                "input": {"name": "after", "status": "COMPLETED", "expirationSeconds": 120},
            },
        )
    )["updateSession"]

    assert updated["name"] == "after"
    assert updated["status"] == "COMPLETED"
    assert updated["expirationSeconds"] == 120
    assert _parse(updated["expiresAt"]) - _parse(updated["createdAt"]) == timedelta(seconds=120)
    assert _parse(updated["updatedAt"]) >= _parse(updated["createdAt"])


async def test_update_leaves_absent_fields_alone_and_null_name_clears_it(api: ApiClient) -> None:
    created = (
        await api.data(CREATE_SESSION_ID, {"input": {"name": "keep", "expirationSeconds": 900}})
    )["createSession"]
    renamed = (
        await api.data(UPDATE_SESSION, {"id": created["id"], "input": {"status": "COMPLETED"}})
    )["updateSession"]
    assert (renamed["name"], renamed["expirationSeconds"]) == ("keep", 900)

    cleared = (await api.data(UPDATE_SESSION, {"id": created["id"], "input": {"name": None}}))[
        "updateSession"
    ]
    assert cleared["name"] is None
    assert cleared["status"] == "COMPLETED"


async def test_update_of_unknown_session_is_not_found(api: ApiClient) -> None:
    error = await api.error(UPDATE_SESSION, {"id": "missing", "input": {"name": "x"}})
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "missing" in error["message"]


async def test_delete_returns_the_session_and_removes_its_messages(
    api: ApiClient, database: Database
) -> None:
    created = (await api.data(CREATE_SESSION_ID, {"input": {"name": "doomed"}}))["createSession"]
    await api.data(
        ADD_MESSAGES, {"sessionId": created["id"], "messages": [{"user": {"content": "x"}}] * 3}
    )

    deleted = (await api.data(DELETE_SESSION, {"id": created["id"]}))["deleteSession"]

    assert deleted == {"id": created["id"], "name": "doomed", "messageCount": 3}
    assert (await api.data(GET_SESSION, {"id": created["id"]})) == {"session": None}
    assert await database.messages.count_documents({"session_id": created["id"]}) == 0
    again = await api.error(DELETE_SESSION, {"id": created["id"]})
    assert again["extensions"]["code"] == "NOT_FOUND"


async def test_expired_session_reads_completed_and_refuses_messages(
    api: ApiClient, database: Database
) -> None:
    created = (await api.data(CREATE_SESSION_ID, {"input": {"expirationSeconds": 60}}))[
        "createSession"
    ]
    # Move the expiry into the past rather than waiting a minute.
    past = datetime.now().astimezone() - timedelta(seconds=1)
    await database.sessions.update_one({"_id": created["id"]}, {"$set": {"expires_at": past}})

    session = (await api.data(GET_SESSION, {"id": created["id"]}))["session"]
    assert session["status"] == "COMPLETED"

    error = await api.error(
        ADD_MESSAGES, {"sessionId": created["id"], "messages": [{"user": {"content": "late"}}]}
    )
    assert error["extensions"]["code"] == "CONFLICT"
    assert "expired" in error["message"]
    assert (await api.data(GET_SESSION, {"id": created["id"]}))["session"]["messageCount"] == 0
