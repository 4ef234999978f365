"""Access tokens: minting from an API key, using them over HTTP and websockets, and what
read-only, session-scoped, expired, tampered and revoked tokens may do."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from sessiongraph.auth import Caller, KeyVerifier
from sessiongraph.settings import Settings
from sessiongraph.tokens import (
    TOKEN_PREFIX,
    AccessTokenRefused,
    AccessTokens,
    development_token_secret,
    query_access_token,
)
from storage import (
    ApiKeyStore,
    Database,
    MessageStore,
    SessionPosition,
    SessionQuery,
    SessionRecord,
    SessionStore,
    TimeRange,
)
from storage.scope import ScopedMessageStore, ScopedSessionStore
from tests.api_client import ApiClient
from tests.factories import create_session, position_of, session_record
from tests.keys import key_id_of, new_org_key, signer
from tests.operations import (
    CREATE_ACCESS_TOKEN,
    CREATE_SESSION_ID,
    DELETE_SESSION,
    UPDATE_SESSION,
)
from tests.serving import serving
from tests.ws_client import PROTOCOLS, Protocol, connect, connected

LIST_IDS = """
query Ids($filter: SessionFilter) {
  sessions(first: 100, filter: $filter) { totalCount nodes { id } }
}
"""

SESSION_ID = "query One($id: ID!) { session(id: $id) { id messageCount } }"

ADD_SEQS = """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""

MESSAGE_ADDED = """
subscription Live($sessionId: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $sessionId, afterSeq: $afterSeq) { seq content }
}
"""

SESSION_UPDATED = "subscription Changed($id: ID!) { sessionUpdated(id: $id) { id name } }"

HELLO = [{"user": {"content": "hello"}}]

README = (Path(__file__).parent.parent / "README.md").read_text()


async def mint(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """A new access token minted with `api`'s key."""
    data = await api.data(CREATE_ACCESS_TOKEN, {"input": fields})
    token: dict[str, Any] = data["createAccessToken"]
    return token


async def unauthenticated(server: str, token: str) -> httpx.Response:
    """The response to a query with `token`, which must be 401 UNAUTHENTICATED."""
    async with ApiClient(server, token) as client:
        response = await client.post(LIST_IDS)
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert token not in response.text
    return response


# Minting


async def test_an_api_key_mints_a_read_only_org_wide_token_for_an_hour_by_default(
    server: str, api: ApiClient
) -> None:
    session_id = await create_session(api, messages=HELLO)
    before = datetime.now(UTC)
    minted = await mint(api)
    assert minted["token"].startswith(TOKEN_PREFIX)
    assert minted["readOnly"] is True
    assert minted["sessionIds"] is None
    expires = datetime.fromisoformat(minted["expiresAt"])
    assert before + timedelta(seconds=3598) <= expires <= before + timedelta(seconds=3602)
    async with ApiClient(server, minted["token"]) as browser:
        listed = await browser.data(LIST_IDS)
    assert listed["sessions"]["nodes"] == [{"id": session_id}]


async def test_a_token_cannot_mint_tokens(server: str, api: ApiClient) -> None:
    minted = await mint(api, readOnly=False)
    async with ApiClient(server, minted["token"]) as browser:
        error = await browser.error(CREATE_ACCESS_TOKEN, {"input": {}})
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "Only an API key" in error["message"]


@pytest.mark.parametrize("ttl", [4, 0, -1, 86_401])
async def test_a_ttl_out_of_range_is_bad_user_input(api: ApiClient, ttl: int) -> None:
    error = await api.error(CREATE_ACCESS_TOKEN, {"input": {"ttlSeconds": ttl}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["input.ttlSeconds"]
    assert f"input.ttlSeconds = {ttl}" in error["message"]


async def test_unknown_and_other_orgs_session_ids_are_bad_user_input(
    api: ApiClient, other_api: ApiClient
) -> None:
    mine = await create_session(api, messages=HELLO)
    theirs = await create_session(other_api, messages=HELLO)
    ids = [mine, theirs, "no-such-session"]
    body = await api.execute(CREATE_ACCESS_TOKEN, {"input": {"sessionIds": ids}})
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["input.sessionIds"]
    assert repr([theirs, "no-such-session"]) in error["message"]
    assert mine not in error["message"]


async def test_too_many_or_no_session_ids_are_bad_user_input(api: ApiClient) -> None:
    too_many = [f"s{i}" for i in range(101)]
    for ids, says in ((too_many, "at most 100"), ([], "at least one session id")):
        error = await api.error(CREATE_ACCESS_TOKEN, {"input": {"sessionIds": ids}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["fields"] == ["input.sessionIds"]
        assert says in error["message"]


async def test_without_a_token_secret_minting_says_tokens_are_not_configured(
    settings: Settings, database: Database, server: str, api: ApiClient
) -> None:
    token = (await mint(api))["token"]
    _, key = await new_org_key(database)
    async with serving(settings, token_secret=None) as (url, _):
        async with ApiClient(url, key) as client:
            error = await client.error(CREATE_ACCESS_TOKEN, {"input": {}})
        assert error["extensions"]["code"] == "TOKENS_NOT_CONFIGURED"
        assert "SESSIONGRAPH_TOKEN_SECRET" in error["message"]
        await unauthenticated(url, token)


# Refused tokens


async def test_malformed_tokens_get_401(server: str) -> None:
    for token in ("sgt_", "sgt_not-a-jwt", "sgt_a.b.c", TOKEN_PREFIX + "x" * 300):
        await unauthenticated(server, token)


async def test_a_tampered_token_gets_401(server: str, api: ApiClient) -> None:
    token = (await mint(api))["token"]
    header, payload, signature = token.removeprefix(TOKEN_PREFIX).split(".")
    claims = jwt.decode(token.removeprefix(TOKEN_PREFIX), options={"verify_signature": False})
    widened = jwt.encode({**claims, "ro": False}, "x" * 32, algorithm="HS256").split(".")[1]
    await unauthenticated(server, f"{TOKEN_PREFIX}{header}.{widened}.{signature}")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    await unauthenticated(server, f"{TOKEN_PREFIX}{header}.{payload}.{flipped}")


async def test_a_token_signed_with_another_secret_or_algorithm_gets_401(
    server: str, settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    key_id = await key_id_of(database, org[0])
    forged, _ = AccessTokens("y" * 40).mint(
        org[0], key_id, ttl_seconds=600, read_only=False, session_ids=None
    )
    await unauthenticated(server, forged)
    claims = jwt.decode(forged.removeprefix(TOKEN_PREFIX), options={"verify_signature": False})
    # PyJWT takes "" for the "none" algorithm's absent key (its types do not admit None).
    unsigned = jwt.encode(claims, "", algorithm="none")
    await unauthenticated(server, TOKEN_PREFIX + unsigned)


async def test_an_expired_token_gets_401(
    server: str, settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    key_id = await key_id_of(database, org[0])
    expired, _ = signer(settings).mint(
        org[0],
        key_id,
        ttl_seconds=5,
        read_only=True,
        session_ids=None,
        now=datetime.now(UTC) - timedelta(seconds=6),
    )
    await unauthenticated(server, expired)


async def test_a_token_in_use_is_refused_once_it_expires(
    settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    """A token's signature is checked once (it is remembered), its expiry on every request:
    with rate limiting on, by the request ceiling and by authentication alike."""
    key_id = await key_id_of(database, org[0])
    async with serving(settings, rate_limit_per_second=100, rate_limit_burst=100) as (url, _):
        # Whole seconds: it expires in 2 to 3 s, time enough for two requests.
        token, claims = signer(settings).mint(
            org[0], key_id, ttl_seconds=3, read_only=True, session_ids=None
        )
        async with ApiClient(url, token) as client:
            assert (await client.post(LIST_IDS)).status_code == 200
            assert (await client.post(LIST_IDS)).status_code == 200
        await asyncio.sleep(max(0.0, claims.expires_at.timestamp() - time.time()) + 0.1)
        await unauthenticated(url, token)


async def test_a_tampered_copy_of_a_token_in_use_gets_401(server: str, api: ApiClient) -> None:
    token = (await mint(api))["token"]
    async with ApiClient(server, token) as client:
        assert (await client.post(LIST_IDS)).status_code == 200
    header, _, signature = token.removeprefix(TOKEN_PREFIX).split(".")
    claims = jwt.decode(token.removeprefix(TOKEN_PREFIX), options={"verify_signature": False})
    widened = jwt.encode({**claims, "ro": False}, "x" * 32, algorithm="HS256").split(".")[1]
    await unauthenticated(server, f"{TOKEN_PREFIX}{header}.{widened}.{signature}")
    await unauthenticated(server, token + "x")


def test_the_signer_remembers_a_verified_token_until_it_expires() -> None:
    tokens = AccessTokens("z" * 40)
    token, claims = tokens.mint("org", "key", ttl_seconds=1, read_only=True, session_ids=None)
    assert tokens.verify(token) == claims
    assert tokens.verify(token) == claims
    time.sleep(max(0.0, claims.expires_at.timestamp() - time.time()) + 0.05)
    assert tokens.verify(token) is None
    assert tokens.verify(token) is None


async def test_an_expired_token_is_refused_at_connection_init(
    server: str, settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    key_id = await key_id_of(database, org[0])
    expired, _ = signer(settings).mint(
        org[0], key_id, ttl_seconds=5, read_only=True, session_ids=None,
        now=datetime.now(UTC) - timedelta(seconds=6),
    )  # fmt: skip
    async with connect(server) as client:
        await client.send({"type": "connection_init", "payload": {"authorization": expired}})
        assert await client.close_code() == 4403


# Read-only tokens


async def test_a_read_only_token_cannot_change_anything(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, messages=HELLO)
    before = await api.data(SESSION_ID, {"id": session_id})
    listed_before = await api.data(LIST_IDS)
    token = (await mint(api))["token"]
    attempts: list[tuple[str, dict[str, Any]]] = [
        (CREATE_SESSION_ID, {"input": {"name": "new"}}),
        (UPDATE_SESSION, {"id": session_id, "input": {"name": "renamed"}}),
        (DELETE_SESSION, {"id": session_id}),
        (ADD_SEQS, {"sessionId": session_id, "messages": HELLO}),
    ]
    async with ApiClient(server, token) as browser:
        assert (await browser.data(SESSION_ID, {"id": session_id})) == before
        for document, variables in attempts:
            error = await browser.error(document, variables)
            assert error["extensions"]["code"] == "FORBIDDEN", error
            assert "read-only" in error["message"]
    assert await api.data(SESSION_ID, {"id": session_id}) == before
    assert await api.data(LIST_IDS) == listed_before


async def test_a_writable_token_writes_for_its_organization(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    token = (await mint(api, readOnly=False))["token"]
    async with ApiClient(server, token) as app_client:
        session_id = await create_session(app_client, messages=HELLO)
        added = await app_client.data(ADD_SEQS, {"sessionId": session_id, "messages": HELLO})
    assert added["addMessages"] == [{"seq": 2}]
    assert (await api.data(SESSION_ID, {"id": session_id}))["session"]["messageCount"] == 2


# Session-scoped tokens


async def test_a_scoped_token_sees_only_its_sessions(server: str, api: ApiClient) -> None:
    mine = [await create_session(api, messages=HELLO) for _ in range(2)]
    others = [await create_session(api, messages=HELLO) for _ in range(2)]
    token = (await mint(api, sessionIds=mine))["token"]
    async with ApiClient(server, token) as browser:
        listed = await browser.data(LIST_IDS)
        assert listed["sessions"]["totalCount"] == 2
        assert {node["id"] for node in listed["sessions"]["nodes"]} == set(mine)
        filtered = await browser.data(LIST_IDS, {"filter": {"idAny": [mine[0], *others]}})
        assert filtered["sessions"]["totalCount"] == 1
        assert filtered["sessions"]["nodes"] == [{"id": mine[0]}]
        outside = await browser.data(LIST_IDS, {"filter": {"idAny": others}})
        assert outside["sessions"] == {"totalCount": 0, "nodes": []}
        assert (await browser.data(SESSION_ID, {"id": others[0]}))["session"] is None
        assert (await browser.data(SESSION_ID, {"id": mine[1]}))["session"]["id"] == mine[1]


async def test_a_scoped_writable_token_writes_only_its_sessions(
    server: str, api: ApiClient
) -> None:
    mine = await create_session(api, messages=HELLO)
    other = await create_session(api, messages=HELLO)
    before = await api.data(SESSION_ID, {"id": other})
    token = (await mint(api, sessionIds=[mine], readOnly=False))["token"]
    async with ApiClient(server, token) as app_client:
        for document, variables in (
            (UPDATE_SESSION, {"id": other, "input": {"name": "renamed"}}),
            (DELETE_SESSION, {"id": other}),
            (ADD_SEQS, {"sessionId": other, "messages": HELLO}),
        ):
            error = await app_client.error(document, variables)
            assert error["extensions"]["code"] == "NOT_FOUND", error
        error = await app_client.error(CREATE_SESSION_ID, {"input": {}})
        assert error["extensions"]["code"] == "FORBIDDEN"
        added = await app_client.data(ADD_SEQS, {"sessionId": mine, "messages": HELLO})
        assert added["addMessages"] == [{"seq": 2}]
    assert await api.data(SESSION_ID, {"id": other}) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_scoped_token_subscribes_to_its_sessions_only(
    server: str, api: ApiClient, protocol: Protocol
) -> None:
    mine = await create_session(api, messages=HELLO)
    other = await create_session(api, messages=HELLO)
    token = (await mint(api, sessionIds=[mine]))["token"]
    async with connected(server, token, protocol) as client:
        await client.subscribe("mine", MESSAGE_ADDED, {"sessionId": mine, "afterSeq": 0})
        assert (await client.data("mine"))["messageAdded"] == {"seq": 1, "content": "hello"}
        for id, document, variables in (
            ("m", MESSAGE_ADDED, {"sessionId": other, "afterSeq": 0}),
            ("u", SESSION_UPDATED, {"id": other}),
        ):
            await client.subscribe(id, document, variables)
            message = await client.receive()
            while message.get("id") != id:  # a live message of "mine" may come first
                message = await client.receive()
            errors = message["payload"] if message["type"] == "error" else None
            errors = errors or message["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "NOT_FOUND", message


async def test_a_scoped_token_does_not_join_an_org_wide_shared_stream(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    """Identical subscriptions share one run per organization; a scoped token's must not
    be served by the organization's run."""
    other = await create_session(api, messages=HELLO)
    mine = await create_session(api, messages=HELLO)
    token = (await mint(api, sessionIds=[mine]))["token"]
    async with connected(server, org[1]) as owner, connected(server, token) as scoped:
        await owner.subscribe("o", SESSION_UPDATED, {"id": other})
        await scoped.subscribe("s", SESSION_UPDATED, {"id": other})
        message = await scoped.receive()
        payload = message["payload"]
        errors = payload if message["type"] == "error" else payload["errors"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND", message
        await api.data(UPDATE_SESSION, {"id": other, "input": {"name": "seen by the owner"}})
        assert (await owner.data("o"))["sessionUpdated"]["name"] == "seen by the owner"


# Revocation


@pytest.fixture(scope="module")
async def cached_server(settings: Settings, database: Database) -> Any:
    """A server of its own that trusts verified keys for one second."""
    async with serving(settings, auth_cache_seconds=1) as (url, app):
        yield url, app


async def test_revoking_the_key_ends_its_tokens_within_the_cache_window(
    cached_server: tuple[str, Starlette], database: Database, org: tuple[str, str]
) -> None:
    url, _ = cached_server
    async with ApiClient(url, org[1]) as owner:
        token = (await mint(owner))["token"]
    async with ApiClient(url, token) as browser:
        assert (await browser.post(LIST_IDS)).status_code == 200
        await ApiKeyStore(database).revoke(await key_id_of(database, org[0]))
        revoked_at = time.monotonic()
        while (await browser.post(LIST_IDS)).status_code == 200:
            assert time.monotonic() - revoked_at < 3, "the token outlived its revoked key"
            await asyncio.sleep(0.1)
    await unauthenticated(url, token)
    await unauthenticated(url, org[1])


async def test_the_verifier_tells_listeners_of_held_keys_that_are_revoked(
    database: Database, settings: Settings, org: tuple[str, str]
) -> None:
    keys = ApiKeyStore(database)
    verifier = KeyVerifier(keys, cache_seconds=60, tokens=signer(settings))
    caller = await verifier.caller_of(org[1])
    assert caller is not None
    assert caller.key_id is not None
    token, _ = signer(settings).mint(
        org[0], caller.key_id, ttl_seconds=60, read_only=True, session_ids=None
    )
    assert await verifier.caller_of(token) is not None
    heard: list[frozenset[str]] = []
    verifier.on_revoked(heard.append)
    with verifier.holding(caller):
        assert await verifier.recheck() == frozenset()
        await keys.revoke(caller.key_id)
        assert await verifier.recheck() == {caller.key_id}
    assert heard == [frozenset({caller.key_id})]
    # Cached for a minute, yet refused at once: the re-check forgot the cached answers.
    assert await verifier.caller_of(org[1]) is None
    assert await verifier.caller_of(token) is None
    assert await verifier.recheck() == frozenset()  # no longer held


async def test_the_verifier_rechecks_held_keys_on_its_own(
    database: Database, settings: Settings, org: tuple[str, str]
) -> None:
    keys = ApiKeyStore(database)
    verifier = KeyVerifier(keys, cache_seconds=1)
    caller = await verifier.caller_of(org[1])
    assert caller is not None
    assert caller.key_id is not None
    heard: asyncio.Queue[frozenset[str]] = asyncio.Queue()
    verifier.on_revoked(heard.put_nowait)
    verifier.start()
    try:
        with verifier.holding(caller):
            await keys.revoke(caller.key_id)
            assert await asyncio.wait_for(heard.get(), 5) == {caller.key_id}
    finally:
        await verifier.stop()


async def test_a_token_caller_carries_its_grant(
    database: Database, settings: Settings, org: tuple[str, str]
) -> None:
    verifier = KeyVerifier(ApiKeyStore(database), cache_seconds=0, tokens=signer(settings))
    key_caller = await verifier.caller_of(org[1])
    assert key_caller is not None
    assert key_caller.key_id is not None
    token, claims = signer(settings).mint(
        org[0], key_caller.key_id, ttl_seconds=60, read_only=False, session_ids=["a", "b"]
    )
    assert await verifier.caller_of(token) == Caller(
        org_id=org[0],
        expires_at=claims.expires_at,
        key_id=key_caller.key_id,
        read_only=False,
        session_ids=frozenset({"a", "b"}),
        token=True,
    )
    assert key_caller == Caller(org_id=org[0], key_id=key_caller.key_id)
    assert await verifier.organization_of(token) == org[0]
    assert not KeyVerifier.expired(key_caller)
    assert not KeyVerifier.expired(Caller(org_id=org[0], expires_at=claims.expires_at))
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert KeyVerifier.expired(Caller(org_id=org[0], expires_at=past))


async def test_a_token_issued_a_little_in_the_future_is_accepted(
    server: str, settings: Settings, database: Database, org: tuple[str, str]
) -> None:
    """Another process's clock may run ahead: its fresh tokens still work here."""
    key_id = await key_id_of(database, org[0])
    ahead, _ = signer(settings).mint(
        org[0], key_id, ttl_seconds=60, read_only=True, session_ids=None,
        now=datetime.now(UTC) + timedelta(seconds=30),
    )  # fmt: skip
    async with ApiClient(server, ahead) as client:
        assert (await client.post(LIST_IDS)).status_code == 200


# The SSE query parameter and the logs


def test_the_access_token_query_parameter_takes_tokens_on_get_only() -> None:
    assert query_access_token("GET", {}) is None
    assert query_access_token("GET", {"access_token": "sgt_abc"}) == "sgt_abc"
    with pytest.raises(AccessTokenRefused, match="never an API key") as refused:
        query_access_token("GET", {"access_token": "sg_secretkey"})
    assert "sg_secretkey" not in str(refused.value)
    with pytest.raises(AccessTokenRefused, match="only accepted on GET"):
        query_access_token("POST", {"access_token": "sgt_abc"})


async def test_the_access_log_never_prints_an_access_token_from_the_url(
    server: str, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = (await mint(api))["token"]
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(base_url=server) as client:
            await client.get("/graphql", params={"access_token": token, "query": "{__typename}"})
    # The test's own HTTP client logs the URL it requested; the server's loggers must not.
    served = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name == "sessiongraph.access" for r in served)
    assert all(token not in r.getMessage() for r in served)
    assert all(token not in str(r.__dict__) for r in served)


# Pieces


def test_scoped_stores_override_every_public_method_of_the_stores() -> None:
    for scoped, base in ((ScopedSessionStore, SessionStore), (ScopedMessageStore, MessageStore)):
        public = {name for name in vars(base) if not name.startswith("_")}
        missing = {name for name in public if name not in vars(scoped)}
        assert not missing, f"{scoped.__name__} lets {missing} read past the scope"


def test_the_development_token_secret_is_made_once_and_kept_private(tmp_path: Any) -> None:
    path = tmp_path / "dev-token-secret"
    secret = development_token_secret(path)
    assert len(secret) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert development_token_secret(path) == secret


def test_a_short_token_secret_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="SESSIONGRAPH_TOKEN_SECRET needs at least 32"):
        Settings(token_secret="short")


async def test_the_readme_token_flow_works_as_written(server: str, api: ApiClient) -> None:
    """The "From a web app" section's mutation, run by a backend, and the page's query,
    run with the token it returns."""
    section = README.split("## From a web app", 1)[1].split("\n## ", 1)[0]
    mutation = section.split("```graphql\n", 1)[1].split("```", 1)[0]
    page_query = section.split('query: "', 1)[1].split('" }', 1)[0]
    session_id = await create_session(api, messages=HELLO)
    await create_session(api, messages=HELLO)
    minted = (await api.data(mutation.replace("<session id>", session_id)))["createAccessToken"]
    assert minted["readOnly"] is True
    assert minted["sessionIds"] == [session_id]
    async with ApiClient(server, minted["token"]) as browser:
        listed = await browser.data(page_query)
    assert [node["id"] for node in listed["sessions"]["nodes"]] == [session_id]


async def test_revoked_among_names_revoked_and_unknown_keys_in_batches(
    database: Database,
) -> None:
    keys = ApiKeyStore(database)
    live, _ = await keys.create("org-revoked-among")
    gone, _ = await keys.create("org-revoked-among")
    await keys.revoke(gone["id"])
    unknown = [f"key_unknown_{i}" for i in range(600)]  # more than one batch
    asked = [live["id"], gone["id"], *unknown, live["id"]]
    assert await keys.revoked_among(asked) == {gone["id"], *unknown}
    assert await keys.revoked_among([]) == set()


async def test_scoped_lists_and_counts_agree_with_the_database_query(
    database: Database,
) -> None:
    """The scoped store filters, sorts and pages in Python; the unscoped one in MongoDB.
    For the same sessions, every filter, order and page must come out the same."""
    store = SessionStore(database)
    org_id = f"org-scope-{uuid.uuid4().hex[:8]}"
    variants: list[dict[str, Any]] = [
        {"name": "a", "assistant_id": "x"},
        {"name": "a", "assistant_id": "y", "customer": {"number": "+14155550100"}},
        {"name": "b", "status": "completed", "phone_number_id": "p1"},
        {"name": "b", "expiration_seconds": 0},  # expired: reads as completed
        {"name": None, "customer": {"number": "+14155550101"}},
        {"name": "c", "assistant_id": "x", "phone_number_id": "p2"},
    ]
    created = []
    for index in range(18):
        record, _ = await store.create(org_id, session_record(**variants[index % 6]), [])
        created.append(record)
        if index % 4 == 0:
            await store.update(org_id, record["id"], {"name": record["name"]})
    scope = frozenset(record["id"] for record in created[::2] + created[1:4])
    scoped = ScopedSessionStore(store, scope)
    middle = created[8]["created_at"]  # in scope: bounds a microsecond past it must not matter
    queries = [
        SessionQuery(),
        SessionQuery(status="active"),
        SessionQuery(status="completed"),
        SessionQuery(name="a"),
        SessionQuery(assistant_ids=("x",)),
        SessionQuery(assistant_ids=("x", "y"), status="active"),
        SessionQuery(phone_number_ids=("p1", "p2")),
        SessionQuery(customer_numbers=("+14155550100", "+14155550101")),
        SessionQuery(created_at=TimeRange(gte=middle)),
        SessionQuery(created_at=TimeRange(gt=middle + timedelta(microseconds=500))),
        SessionQuery(created_at=TimeRange(gte=middle + timedelta(microseconds=500))),
        SessionQuery(created_at=TimeRange(lt=middle + timedelta(microseconds=500))),
        SessionQuery(updated_at=TimeRange(lte=middle, gt=created[2]["updated_at"])),
        SessionQuery(ids=(created[0]["id"], created[1]["id"], created[5]["id"])),
        SessionQuery(ids=(created[1]["id"],)),
    ]
    for query in queries:
        in_scope = scope if query.ids is None else scope.intersection(query.ids)
        narrowed = replace(query, ids=tuple(sorted(in_scope)))
        assert await scoped.count(org_id, query) == await store.count(org_id, narrowed)
        for order_by in ("created_at", "updated_at"):
            for descending in (True, False):
                order = {"order_by": order_by, "descending": descending}
                forward = await pages(scoped, store, org_id, query, narrowed, order, "first")
                backward = await pages(scoped, store, org_id, query, narrowed, order, "last")
                assert [r["id"] for r in forward] == [r["id"] for r in reversed(backward)]


async def pages(
    scoped: SessionStore,
    store: SessionStore,
    org_id: str,
    query: SessionQuery,
    narrowed: SessionQuery,
    order: dict[str, Any],
    direction: str,
) -> list[SessionRecord]:
    """Every session, paged by 2 with `first`/`after` or `last`/`before`, asserting that the
    scoped store's pages equal the database's; the sessions in the order seen."""
    seen: list[SessionRecord] = []
    position: SessionPosition | None = None
    while True:
        mark = "after" if direction == "first" else "before"
        args: dict[str, Any] = {direction: 2, mark: position, **order}
        page = await scoped.list(org_id, query, **args)
        assert page == await store.list(org_id, narrowed, **args), (query, args)
        items = page.items if direction == "first" else page.items[::-1]
        seen.extend(items)
        more = page.has_next if direction == "first" else page.has_previous
        if not more:
            return seen
        edge = items[-1]
        position = position_of(edge, order["order_by"])
