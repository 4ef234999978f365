"""Hypothesis strategies and settings for fuzzing the API: literal values for documents that
hypothesis-graphql generates from the schema, and variables for the mutations' inputs.

Both lean towards what is awkward to store or parse: integers beyond 32 and 64 bits, floats
beyond a double, NUL characters and `$` or `.` in JSON keys, deep nesting, long and
non-ASCII text, cursors holding extreme numbers, date-times at the edges of the calendar.
Inputs are mostly well-formed, so that many get past validation and reach storage.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, timedelta, timezone
from typing import Any

import graphql
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes

from schema import schema_sdl

SDL = schema_sdl()
"""The schema the fuzzers generate operations from."""


def fuzz_settings(examples: int) -> settings:
    """Settings for `examples` cases of a test that talks to the server."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Values for generated documents (AST nodes) --------------------------------------------------

NAMES = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True)
HUGE_INTEGERS = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63) - 1])
FLOAT_LITERALS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.sampled_from(["1e400", "-1e400", "1e308", "-0.0"]).map(
        lambda text: graphql.FloatValueNode(value=text)
    ),
)


def nested_literal(depth: int) -> graphql.ValueNode:
    """`{a: {a: ... {a: 1}}}`, `depth` objects deep."""
    value: graphql.ValueNode = nodes.Int(1)
    for _ in range(depth):
        value = nodes.Object(
            [graphql.ObjectFieldNode(name=graphql.NameNode(value="a"), value=value)]
        )
    return value


def object_literal(fields: list[tuple[str, graphql.ValueNode]]) -> graphql.ValueNode:
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=value)
            for name, value in fields
        ]
    )


JSON_LITERALS = st.one_of(
    st.recursive(
        st.one_of(
            (st.integers() | HUGE_INTEGERS).map(nodes.Int),
            FLOAT_LITERALS,
            st.text(max_size=20).map(nodes.String),
            st.booleans().map(nodes.Boolean),
            st.just(nodes.Null),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(nodes.List),
            st.lists(st.tuples(NAMES, children), max_size=4, unique_by=lambda field: field[0]).map(
                object_literal
            ),
        ),
        max_leaves=12,
    ),
    st.integers(1, 120).map(nested_literal),
)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))])
DATETIME_LITERALS = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda moment: nodes.String(moment.isoformat())),
    st.sampled_from(
        ["nope", "", "2025-06-19T12:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59-14:00"]
    ).map(nodes.String),
    st.text(max_size=25).map(nodes.String),
)


INT_LITERALS = st.one_of(
    st.integers(0, 10), st.integers(60, 2_592_000), st.integers(-(2**31), 2**31 - 1)
).map(nodes.Int)
"""Small numbers and session lifetimes, which validation accepts, and any 32-bit integer."""


def cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


ANY_INTEGER = st.integers(min_value=-(2**63), max_value=2**64 - 1)
CURSORS = st.one_of(
    st.tuples(st.sampled_from(["created_at", "updated_at"]), ANY_INTEGER, st.text(max_size=8)).map(
        lambda parts: cursor(["s", *parts])
    ),
    ANY_INTEGER.map(lambda seq: cursor(["m", seq])),
)
STRING_LITERALS = (st.text(max_size=30) | CURSORS).map(nodes.String)


def custom_scalars(session_ids: list[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Literal strategies for our scalars, and for IDs that often name a real session."""
    ids = st.sampled_from(session_ids) | st.uuids().map(str) | st.text(max_size=40)
    return {
        "Int": INT_LITERALS,
        "DateTime": DATETIME_LITERALS,
        "JSON": JSON_LITERALS,
        "Float": FLOAT_LITERALS,
        "String": STRING_LITERALS,
        "ID": ids.map(nodes.String),
    }


# Generated inputs (variables) ----------------------------------------------------------------

HUGE_NUMBERS = st.sampled_from(
    [2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 - 1, 10**30, 1e308]
)
NUMBERS = st.integers(-(2**33), 2**33) | st.floats(allow_nan=False, allow_infinity=False)
ODD_TEXT = st.sampled_from(["", "\x00", "$where", "a.b", "🎉" * 50, "\u202e", "null", "{}"])
TEXT = st.one_of(st.text(max_size=60), ODD_TEXT, st.integers(0, 12_000).map(lambda n: "é" * n))
KEYS = st.text(max_size=12) | st.sampled_from(
    ["$set", "$where", "a.b", "", "\x00", "_id", "x\x00y"]
)
JSON_LEAVES = st.none() | st.booleans() | NUMBERS | HUGE_NUMBERS | TEXT
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)


def nested(depth: int) -> dict[str, Any]:
    """`{"a": {"a": ... {"a": 1}}}`, `depth` objects deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    result: dict[str, Any] = value
    return result


FREE_FORM = st.one_of(
    st.dictionaries(KEYS, JSON_VALUES, max_size=5), st.integers(1, 150).map(nested), JSON_VALUES
)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` seven times in eight, else any JSON value at all (null, a wrong type...)."""
    return st.integers(0, 7).flatmap(lambda n: JSON_LEAVES if n == 0 else valid)


def input_object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of `fields`, each mostly valid, and one time in ten a field
    the input type does not have."""
    optional = {name: mostly(strategy) for name, strategy in fields.items()}
    return st.tuples(st.fixed_dictionaries({}, optional=optional), st.integers(0, 9)).map(
        lambda drawn: {**drawn[0], "unknownField": 1} if drawn[1] == 0 else drawn[0]
    )


SHORT_TEXT = st.text(max_size=40) | TEXT
SECONDS = st.floats(min_value=0, max_value=1e6) | NUMBERS | HUGE_NUMBERS
TRANSCRIPT_FIELDS = {
    "content": TEXT,
    "message": TEXT,
    "time": SECONDS,
    "secondsFromStart": SECONDS,
    "metadata": FREE_FORM,
}
TOOL_CALL = input_object(
    id=SHORT_TEXT,
    type=st.sampled_from(["function", "other"]),
    function=input_object(name=SHORT_TEXT, arguments=JSON_VALUES.map(json.dumps) | TEXT),
)
MESSAGE_VARIANTS = {
    "system": input_object(**TRANSCRIPT_FIELDS),
    "user": input_object(**TRANSCRIPT_FIELDS, endTime=SECONDS, duration=SECONDS),
    "assistant": input_object(
        content=TEXT,
        refusal=TEXT,
        toolCalls=st.lists(TOOL_CALL, max_size=3),
        name=SHORT_TEXT,
        metadata=FREE_FORM,
    ),
    "tool": input_object(content=TEXT, toolCallId=SHORT_TEXT, name=SHORT_TEXT, metadata=FREE_FORM),
    "developer": input_object(content=TEXT, name=SHORT_TEXT, metadata=FREE_FORM),
}
ONE_ROLE = st.sampled_from(sorted(MESSAGE_VARIANTS)).flatmap(
    lambda role: MESSAGE_VARIANTS[role].map(lambda fields: {role: fields})
)
MESSAGE = st.one_of(
    ONE_ROLE,
    ONE_ROLE,
    ONE_ROLE,
    st.fixed_dictionaries({}, optional=MESSAGE_VARIANTS),  # none, or several roles
)
FREE_FORM_OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=5) | st.integers(1, 150).map(nested)
PLAUSIBLE_MESSAGE = st.one_of(
    st.builds(
        lambda content, metadata: {"user": {"content": content, "metadata": metadata}},
        st.text(max_size=200),
        FREE_FORM_OBJECTS,
    ),
    st.builds(
        lambda content, name: {"tool": {"content": content, "toolCallId": "call-1", "name": name}},
        st.text(max_size=200),
        st.text(max_size=40),
    ),
    st.builds(
        lambda arguments: {
            "assistant": {
                "toolCalls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}]
            }
        },
        JSON_VALUES.map(json.dumps),
    ),
)
"""Messages valid but for what their free text and free-form JSON hold."""
MESSAGES = st.one_of(
    st.lists(MESSAGE, min_size=1, max_size=4),
    st.lists(PLAUSIBLE_MESSAGE, min_size=1, max_size=4),
    FREE_FORM.map(lambda value: [{"developer": {"content": "note", "metadata": value}}]),
    st.just([]),
    st.integers(99, 101).map(lambda n: [{"user": {"content": "x"}}] * n),
)
PROVIDER = input_object(provider=SHORT_TEXT, model=SHORT_TEXT, voiceId=SHORT_TEXT) | FREE_FORM
ASSISTANT = input_object(
    name=SHORT_TEXT,
    firstMessage=TEXT,
    firstMessageMode=st.sampled_from(["ASSISTANT_SPEAKS_FIRST", "ASSISTANT_WAITS_FOR_USER", "X"]),
    maxDurationSeconds=st.integers(0, 50_000) | HUGE_NUMBERS,
    backgroundSound=st.sampled_from(["off", "office", "https://example.com/a.mp3", "ftp://x"]),
    voicemailMessage=TEXT,
    endCallMessage=TEXT,
    endCallPhrases=st.lists(TEXT, max_size=3),
    clientMessages=st.lists(st.sampled_from(["transcript", "hang", "nope"]), max_size=3),
    serverMessages=st.lists(st.sampled_from(["end-of-call-report", "hang", "nope"]), max_size=3),
    metadata=FREE_FORM,
    model=PROVIDER,
    voice=PROVIDER,
    transcriber=PROVIDER,
    config=FREE_FORM | st.fixed_dictionaries({"name": SHORT_TEXT}),
)
CUSTOMER = input_object(
    number=st.sampled_from(["+14155550123", "12", "4155550123"]) | SHORT_TEXT,
    numberE164CheckEnabled=st.booleans(),
    extension=SHORT_TEXT,
    sipUri=st.sampled_from(["sip:alice@example.com", "sips:x"]) | SHORT_TEXT,
    name=SHORT_TEXT,
    email=st.sampled_from(["a@example.com"]) | SHORT_TEXT,
    externalId=SHORT_TEXT,
    assistantOverrides=FREE_FORM,
)
SERVER = input_object(
    url=st.sampled_from(["https://hooks.example.com/x", "ftp://x"]) | TEXT,
    timeoutSeconds=SECONDS,
    headers=st.dictionaries(KEYS, SHORT_TEXT, max_size=3) | FREE_FORM,
    backoffPlan=input_object(
        type=st.sampled_from(["FIXED", "EXPONENTIAL", "LINEAR"]),
        maxRetries=st.integers(-1, 11) | HUGE_NUMBERS,
        baseDelaySeconds=SECONDS,
    ),
)
NUMBER_DESTINATION = input_object(
    number=st.sampled_from(["+14155550199"]) | SHORT_TEXT,
    numberE164CheckEnabled=st.booleans(),
    extension=SHORT_TEXT,
    callerId=SHORT_TEXT,
    message=TEXT,
    description=TEXT,
)
SIP_DESTINATION = input_object(
    sipUri=st.sampled_from(["sip:desk@example.com"]) | SHORT_TEXT,
    message=TEXT,
    description=TEXT,
    sipHeaders=FREE_FORM,
)
PHONE_NUMBER = input_object(
    twilioPhoneNumber=st.sampled_from(["+14155550100"]) | SHORT_TEXT,
    twilioAccountSid=st.sampled_from(["AC0123456789"]) | SHORT_TEXT,
    twilioAuthToken=SHORT_TEXT,
    twilioApiKey=SHORT_TEXT,
    twilioApiSecret=SHORT_TEXT,
    name=SHORT_TEXT,
    assistantId=SHORT_TEXT,
    squadId=SHORT_TEXT,
    workflowId=SHORT_TEXT,
    smsEnabled=st.booleans(),
    server=SERVER,
    fallbackDestination=st.fixed_dictionaries(
        {}, optional={"number": NUMBER_DESTINATION, "sip": SIP_DESTINATION}
    ),
    hooks=st.lists(FREE_FORM, max_size=3),
)
STATUSES = st.sampled_from(["ACTIVE", "COMPLETED", "active", "PAUSED"])
EXPIRATIONS = st.sampled_from([59, 60, 3600, 2_592_000, 2_592_001]) | NUMBERS | HUGE_NUMBERS
VALID_PHONE_NUMBER = {"twilioPhoneNumber": "+14155550100", "twilioAccountSid": "AC0123456789"}
FREE_FORM_PLACES: list[Callable[[Any], dict[str, Any]]] = [
    lambda value: {"assistant": {"metadata": value}},
    lambda value: {"assistant": {"config": value}},
    lambda value: {"assistant": {"voice": {**value, "provider": "11labs"}}},
    lambda value: {"customer": {"assistantOverrides": value}},
    lambda value: {"phoneNumber": {**VALID_PHONE_NUMBER, "hooks": [value]}},
    lambda value: {
        "phoneNumber": {**VALID_PHONE_NUMBER, "server": {"url": "https://x.io", "headers": value}}
    },
    lambda value: {"messages": [{"user": {"content": "hi", "metadata": value}}]},
]
"""Valid inputs but for one free-form JSON value, the kind of input most likely to reach
storage with something awkward in it."""
CREATE_INPUT = input_object(
    name=SHORT_TEXT,
    status=STATUSES,
    expirationSeconds=EXPIRATIONS,
    assistantId=SHORT_TEXT,
    assistant=ASSISTANT,
    customer=CUSTOMER,
    phoneNumberId=SHORT_TEXT,
    phoneNumber=PHONE_NUMBER,
    messages=MESSAGES,
)
CREATE_INPUTS = st.one_of(
    mostly(CREATE_INPUT),
    st.tuples(st.sampled_from(FREE_FORM_PLACES), FREE_FORM_OBJECTS).map(
        lambda drawn: drawn[0](drawn[1])
    ),
)
UPDATE_INPUT = input_object(name=SHORT_TEXT, status=STATUSES, expirationSeconds=EXPIRATIONS)
IDEMPOTENCY_KEYS = st.one_of(st.none(), st.text(max_size=250), ODD_TEXT, JSON_LEAVES)
