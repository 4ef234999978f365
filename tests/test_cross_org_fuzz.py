"""Two organizations, fuzzed: whatever organization A does with B's session ids, over HTTP or
websockets, it learns nothing about B and changes nothing of B's.

Organization B creates sessions full of secrets (names, transcripts, customer details, a
Twilio number with its credentials, server headers), each value carrying a marker. Then
Hypothesis draws operations for A's key: `session`, `sessions` filtered by `idAny` (B's ids,
A's own, missing ones, mixed), `node` and `nodes` (B's session and message ids, A's own,
missing ones, mixed), `updateSession`, `deleteSession`, `addMessages` with and
without an idempotency key, and the subscriptions `messageAdded` (live, or replaying with
`afterSeq`) and `sessionUpdated` on both websocket protocols. Each drawn operation runs twice:
once with B's ids, once with fresh random ids in their place. The two answers must be the
same once each id is replaced by a placeholder; the answer naming B's ids may repeat them only
where a NOT_FOUND error echoes the id A sent; no marker and no other id of B's may appear.
Afterwards B's stored sessions, messages and idempotency keys must be exactly as before, and
a live subscription of A's, opened after B writes again, must see only A's own messages.

What the tests showed: 120 HTTP operations (240 requests) and 60 subscriptions (120 on the
wire) a run, with nothing of B's revealed or changed; no fix was needed.

How Hypothesis runs here: see tests/worker_thread_api.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from storage import Database
from tests.api_client import ApiClient
from tests.keys import new_org_key
from tests.operations import (
    ADD_MESSAGES,
    CREATE_SESSION_ID,
    DELETE_SESSION,
    MESSAGE_FIELDS,
    SESSION_FIELDS,
    UPDATE_SESSION,
)
from tests.worker_thread_api import WorkerThreadApi, in_worker_thread
from tests.ws_client import PROTOCOLS, TRANSPORT_WS, WAIT_SECONDS, Protocol, ws_url

READ_SESSION = (
    """
query ReadSession($id: ID!) {
  session(id: $id) {
    ...SessionFields
    messages(last: 50) { totalCount nodes { ...MessageFields } }
  }
}
"""
    + SESSION_FIELDS
    + MESSAGE_FIELDS
)
LIST_BY_IDS = (
    """
query ListByIds($ids: [ID!], $status: SessionStatus) {
  sessions(first: 100, filter: {idAny: $ids, status: $status}) {
    totalCount
    nodes { ...SessionFields }
    edges { cursor }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
    + SESSION_FIELDS
)
MESSAGE_ADDED = (
    """
subscription MessageAdded($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { ...MessageFields }
}
"""
    + MESSAGE_FIELDS
)
SESSION_UPDATED = (
    """
subscription SessionUpdated($id: ID!) { sessionUpdated(id: $id) { ...SessionFields } }
"""
    + SESSION_FIELDS
)
NODE_FIELDS = """
  __typename id
  ... on Session { ...SessionFields }
  ... on Message { ...MessageFields }
"""
NODE = (
    "query Node($id: ID!) { node(id: $id) {" + NODE_FIELDS + "} }" + SESSION_FIELDS + MESSAGE_FIELDS
)
NODES = (
    "query Nodes($ids: [ID!]!) { nodes(ids: $ids) {"
    + NODE_FIELDS
    + "} }"
    + SESSION_FIELDS
    + MESSAGE_FIELDS
)
ADD_ONE = """
mutation AddOne($sessionId: ID!, $content: String!) {
  addMessages(sessionId: $sessionId, messages: [{user: {content: $content}}]) { seq }
}
"""
RENAME = """
mutation Rename($id: ID!, $name: String) { updateSession(id: $id, input: {name: $name}) { id } }
"""

HTTP_OPERATIONS = 120
SUBSCRIPTIONS = 60
B_SESSIONS = 3
A_SESSIONS = 2

FOREIGN = [f"<B{n}>" for n in range(B_SESSIONS)]
"""Placeholders for B's session ids in drawn variables."""
FOREIGN_MESSAGES = [f"<BM{n}>" for n in range(B_SESSIONS)]
"""Placeholders for the id of one message of each of B's sessions."""
OWN = [f"<A{n}>" for n in range(A_SESSIONS)]
MISSING = ["<M0>", "<M1>"]

Operation = tuple[str, dict[str, Any]]
"""A document and its variables, with placeholders where session ids go."""


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


TARGETS = st.sampled_from(FOREIGN + MISSING)
MESSAGES: st.SearchStrategy[list[dict[str, Any]]] = st.one_of(
    st.lists(
        st.sampled_from(
            [
                {"user": {"content": "intruder"}},
                {"assistant": {"content": "hello", "metadata": {"k": 1}}},
                {"tool": {"content": "no toolCallId"}},  # BAD_USER_INPUT
            ]
        ),
        min_size=1,
        max_size=3,
    ),
    st.just([]),
)
UPDATES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=45),
        "status": st.sampled_from(["ACTIVE", "COMPLETED"]),
        "expirationSeconds": st.sampled_from([30, 60, 3600]),
    },
)
HTTP_OPERATION: st.SearchStrategy[Operation] = st.one_of(
    TARGETS.map(lambda target: (READ_SESSION, {"id": target})),
    st.tuples(
        st.lists(st.sampled_from(FOREIGN + OWN + MISSING), min_size=1, max_size=6),
        st.sampled_from([None, "ACTIVE", "COMPLETED"]),
    ).map(lambda drawn: (LIST_BY_IDS, {"ids": drawn[0], "status": drawn[1]})),
    st.tuples(TARGETS, UPDATES).map(lambda d: (UPDATE_SESSION, {"id": d[0], "input": d[1]})),
    TARGETS.map(lambda target: (DELETE_SESSION, {"id": target})),
    st.sampled_from(FOREIGN + FOREIGN_MESSAGES + OWN + MISSING).map(
        lambda target: (NODE, {"id": target})
    ),
    st.lists(
        st.sampled_from(FOREIGN + FOREIGN_MESSAGES + OWN + MISSING), min_size=1, max_size=6
    ).map(lambda ids: (NODES, {"ids": ids})),
    st.tuples(TARGETS, MESSAGES, st.none() | st.text(min_size=1, max_size=20)).map(
        lambda d: (ADD_MESSAGES, {"sessionId": d[0], "messages": d[1], "key": d[2]})
    ),
)
SUBSCRIPTION: st.SearchStrategy[Operation] = st.one_of(
    st.tuples(TARGETS, st.none() | st.integers(0, 5)).map(
        lambda d: (MESSAGE_ADDED, {"sessionId": d[0], "afterSeq": d[1]})
    ),
    TARGETS.map(lambda target: (SESSION_UPDATED, {"id": target})),
)


class Organization:
    """B: its key, its sessions and the marker every value it stored carries."""

    def __init__(self, org_id: str, key: str, marker: str) -> None:
        self.org_id = org_id
        self.key = key
        self.marker = marker
        self.session_ids: list[str] = []
        self.message_ids: list[str] = []

    def session_input(self, n: int) -> dict[str, Any]:
        secret = f"{self.marker}-{n}"
        return {
            "name": f"{secret}-name"[:40],
            "assistant": {"name": "Ava", "metadata": {"secret": secret}},
            "customer": {"number": "+14155550166", "name": secret[:40], "externalId": secret},
            "phoneNumber": {
                "twilioPhoneNumber": "+14155550177",
                "twilioAccountSid": f"AC-{secret}",
                "twilioAuthToken": f"token-{secret}",
                "twilioApiKey": f"key-{secret}",
                "twilioApiSecret": f"apisecret-{secret}",
                "server": {"url": "https://b.example.com/hook", "headers": {"X-B": secret}},
            },
            "messages": [
                {"system": {"content": f"prompt {secret}"}},
                {"user": {"content": f"my card is {secret}"}},
                {"assistant": {"content": f"noted {secret}"}},
            ],
        }


async def organization_b(database: Database, server: str) -> Organization:
    """A second organization with sessions full of marked secrets."""
    org_id, key = await new_org_key(database)
    b = Organization(org_id, key, f"bsecret{uuid.uuid4().hex[:12]}")
    async with ApiClient(server, key) as api:
        for n in range(B_SESSIONS):
            created = await api.data(CREATE_SESSION_ID, {"input": b.session_input(n)})
            b.session_ids.append(created["createSession"]["id"])
            read = await api.data(READ_SESSION, {"id": b.session_ids[-1]})
            b.message_ids.append(read["session"]["messages"]["nodes"][n]["id"])
    return b


async def state_of(b: Organization, server: str, database: Database) -> dict[str, Any]:
    """B's sessions as B reads them, and everything stored of them: documents (secrets
    included), messages and idempotency keys."""
    async with ApiClient(server, b.key) as api:
        read = [await api.data(READ_SESSION, {"id": session_id}) for session_id in b.session_ids]
    scope = {"session_id": {"$in": b.session_ids}}
    return {
        "read": read,
        "sessions": await database.sessions.find({"org_id": b.org_id}).sort("_id").to_list(None),
        "messages": await database.messages.find(scope).sort("_id").to_list(None),
        "idempotency": await database.idempotency.find(scope).sort("_id").to_list(None),
    }


def substituted(variables: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """`variables` with each placeholder replaced by its id."""
    text = json.dumps(variables)
    for placeholder, session_id in ids.items():
        text = text.replace(placeholder, session_id)
    result: dict[str, Any] = json.loads(text)
    return result


def with_placeholders(answer: Any, ids: dict[str, str]) -> Any:
    """`answer` with each id replaced by its placeholder, so two answers compare by shape."""
    text = json.dumps(answer)
    for placeholder, session_id in ids.items():
        text = text.replace(session_id, placeholder)
    return json.loads(text)


def without_echoes(answer: Any, sent: set[str]) -> Any:
    """`answer` less what a NOT_FOUND error may say: the id the caller sent."""
    if isinstance(answer, list):
        return [without_echoes(item, sent) for item in answer]
    if not isinstance(answer, dict):
        return answer
    answer = {key: without_echoes(value, sent) for key, value in answer.items()}
    extensions = answer.get("extensions")
    if isinstance(extensions, dict) and extensions.get("code") == "NOT_FOUND":
        if extensions.get("id") in sent:
            answer["extensions"] = {k: v for k, v in extensions.items() if k != "id"}
        for session_id in sent:
            answer["message"] = answer["message"].replace(session_id, "<sent>")
    return answer


def assert_reveals_nothing(answer: Any, b: Organization, sent: set[str]) -> None:
    """No marker, org id or session id of B's in `answer` beyond NOT_FOUND's echo of the
    ids in `sent`."""
    text = json.dumps(without_echoes(answer, sent))
    assert b.marker not in text, text
    assert b.org_id not in text, text
    for b_id in b.session_ids + b.message_ids:
        assert b_id not in text, text


def id_maps(a_ids: list[str], b: Organization) -> tuple[dict[str, str], dict[str, str]]:
    """Placeholder → id for the call naming B's ids, and for its control naming fresh ids
    instead; both share A's own ids and the same missing ids."""
    shared = {**dict(zip(OWN, a_ids, strict=True)), **{m: str(uuid.uuid4()) for m in MISSING}}
    foreign = {
        **shared,
        **dict(zip(FOREIGN, b.session_ids, strict=True)),
        **dict(zip(FOREIGN_MESSAGES, b.message_ids, strict=True)),
    }
    control = {**shared, **{f: str(uuid.uuid4()) for f in FOREIGN + FOREIGN_MESSAGES}}
    return foreign, control


async def own_sessions(api: ApiClient) -> list[str]:
    """Sessions of A's own, which A's listings may find."""
    created = [await api.data(CREATE_SESSION_ID, {"input": {"name": "A's"}}) for _ in OWN]
    return [c["createSession"]["id"] for c in created]


async def test_another_orgs_operations_on_b_match_missing_ids_and_change_nothing(
    server: str, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    b = await organization_b(database, server)
    a_ids = await own_sessions(api)
    before = await state_of(b, server, database)
    ran: list[Operation] = []

    with WorkerThreadApi(server, org[1]) as client:

        @hypothesis_settings(HTTP_OPERATIONS)
        @given(HTTP_OPERATION)
        def run_twice(operation: Operation) -> None:
            document, variables = operation
            foreign_ids, control_ids = id_maps(a_ids, b)
            foreign = client.execute(document, substituted(variables, foreign_ids))
            control = client.execute(document, substituted(variables, control_ids))
            codes = {e["extensions"]["code"] for e in foreign.get("errors", [])}
            assert codes <= {"NOT_FOUND", "BAD_USER_INPUT"}, foreign
            assert with_placeholders(foreign, foreign_ids) == with_placeholders(
                control, control_ids
            )
            assert_reveals_nothing(foreign, b, set(b.session_ids))
            ran.append(operation)

        await in_worker_thread(run_twice)

    assert len(ran) >= HTTP_OPERATIONS
    assert await state_of(b, server, database) == before


class Subscriber:
    """A synchronous websocket connection of A's, for the worker thread."""

    def __init__(self, connection: ClientConnection, protocol: Protocol, key: str) -> None:
        self.connection = connection
        self.protocol = protocol
        self.serial = 0
        self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        assert self.receive()["type"] == "connection_ack"

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def receive(self) -> dict[str, Any]:
        """The next message that is not a keep-alive."""
        while True:
            message: dict[str, Any] = json.loads(self.connection.recv(WAIT_SECONDS))
            if message["type"] == "ping":
                self.send({"type": "pong"})
            elif message["type"] not in ("pong", "ka"):
                return message

    def subscribe(self, document: str, variables: dict[str, Any]) -> str:
        self.serial += 1
        operation_id = str(self.serial)
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": document, "variables": variables}
        self.send({"id": operation_id, "type": kind, "payload": payload})
        return operation_id

    def until_it_ends(self, document: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """Subscribe; every message of the subscription up to its `complete` or `error`,
        with the subscription's id left out."""
        operation_id = self.subscribe(document, variables)
        messages = []
        while True:
            message = self.receive()
            assert message.get("id") == operation_id, message
            messages.append({k: v for k, v in message.items() if k != "id"})
            if message["type"] in ("complete", "error"):
                return messages


@contextmanager
def subscribers_of(server: str, key: str) -> Iterator[dict[Protocol, Subscriber]]:
    """One acknowledged connection per protocol, closed when the block ends."""
    with ExitStack() as stack:
        subscribers = {}
        for protocol in PROTOCOLS:
            connection = stack.enter_context(
                ws_connect(
                    ws_url(server),
                    subprotocols=[protocol],  # type: ignore[list-item]
                    compression=None,
                    proxy=None,
                    open_timeout=WAIT_SECONDS,
                    max_size=None,
                )
            )
            subscribers[protocol] = Subscriber(connection, protocol, key)
        yield subscribers


async def test_another_orgs_subscriptions_to_b_match_missing_ids_and_deliver_nothing(
    server: str, api: ApiClient, org: tuple[str, str], database: Database
) -> None:
    b = await organization_b(database, server)
    a_ids = await own_sessions(api)
    before = await state_of(b, server, database)
    ran: list[Operation] = []

    with WorkerThreadApi(server, org[1]) as client, WorkerThreadApi(server, b.key) as b_client:

        def fuzz_then_watch_live() -> None:
            with subscribers_of(server, org[1]) as subscribers:

                @hypothesis_settings(SUBSCRIPTIONS)
                @given(SUBSCRIPTION, st.sampled_from(PROTOCOLS))
                def subscribe_twice(operation: Operation, protocol: Protocol) -> None:
                    document, variables = operation
                    foreign_ids, control_ids = id_maps(a_ids, b)
                    subscriber = subscribers[protocol]
                    foreign = subscriber.until_it_ends(
                        document, substituted(variables, foreign_ids)
                    )
                    control = subscriber.until_it_ends(
                        document, substituted(variables, control_ids)
                    )
                    assert with_placeholders(foreign, foreign_ids) == with_placeholders(
                        control, control_ids
                    )
                    assert_reveals_nothing(foreign, b, set(b.session_ids))
                    ran.append(operation)

                subscribe_twice()
                assert client.run(state_of(b, server, database)) == before
                watched = own_session_while_b_writes(client, b_client, subscribers, a_ids[0], b)
                for received in watched:
                    assert_reveals_nothing(received, b, set())

        await in_worker_thread(fuzz_then_watch_live)

    assert len(ran) >= SUBSCRIPTIONS


def own_session_while_b_writes(
    client: WorkerThreadApi,
    b_client: WorkerThreadApi,
    subscribers: dict[Protocol, Subscriber],
    own_id: str,
    b: Organization,
) -> list[list[dict[str, Any]]]:
    """Subscribe to A's own session on each connection; let B write to its sessions, then A
    to its own; what each connection received, up to A's message."""
    watching = {
        protocol: subscriber.subscribe(MESSAGE_ADDED, {"sessionId": own_id})
        for protocol, subscriber in subscribers.items()
    }
    for session_id in b.session_ids:
        b_client.execute(ADD_ONE, {"sessionId": session_id, "content": b.marker})
        b_client.execute(RENAME, {"id": session_id, "name": b.marker})
    client.execute(ADD_ONE, {"sessionId": own_id, "content": "A's own"})
    received = []
    for protocol, subscriber in subscribers.items():
        messages = []
        while True:
            message = subscriber.receive()
            messages.append(message)
            if message["type"] in ("next", "data"):
                assert message["id"] == watching[protocol], message
                assert message["payload"]["data"]["messageAdded"]["content"] == "A's own"
                break
        received.append(messages)
    return received
