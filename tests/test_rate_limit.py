"""Per-key rate limiting: a request ceiling before parsing, and a budget of points each
operation is charged its estimated cost from, reported in `extensions.cost` and the
`RateLimit-*` headers; 429 RATE_LIMITED with Retry-After over either."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from graphql import parse

from resolvers.sessions import SESSIONS_PAGE_DEFAULT
from schema import LIST_ARGUMENTS, PAGE_SIZES, create_schema
from schema.cost import operation_cost
from sessiongraph.rate_limit import TokenBuckets
from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.keys import key_id_of, new_org_key, signer
from tests.operations import CREATE_SESSION_ID
from tests.serving import serving
from tests.sse_client import sse
from tests.ws_client import connected

COUNT = "{ sessions { totalCount } }"
COSTLY = "{ sessions(first: 20) { nodes { messages(last: 20) { nodes { seq } } } } }"
EXPENSIVE = "{ sessions { nodes { id messages { nodes { content } } } } }"
"""Every session of a default page with every message of a default page each."""
MESSAGE_ADDED = "subscription($id: ID!) { messageAdded(sessionId: $id) { seq } }"
README = (Path(__file__).parent.parent / "README.md").read_text()

SLOW_REFILL = 0.001
"""Points regained per second in the tests that count points: none, within a test."""


def ids_page(size: int) -> str:
    """A listing of `size` session ids, which costs `size` + 1 points."""
    return f"{{ sessions(first: {size}) {{ nodes {{ id }} }} }}"


def estimate(query: str) -> int:
    """The schema's own estimate of `query`, as the guard makes it."""
    return operation_cost(
        create_schema()._schema,
        parse(query),
        operation_name=None,
        variables=None,
        default_page_size=SESSIONS_PAGE_DEFAULT,
        field_page_sizes=PAGE_SIZES,
        list_arguments=LIST_ARGUMENTS,
    )


def budget_headers(response: httpx.Response) -> dict[str, Any]:
    """The `RateLimit-*` headers of a response, named as `extensions.cost` names them."""
    return {
        "limit": int(response.headers["ratelimit-limit"]),
        "remaining": int(response.headers["ratelimit-remaining"]),
        "resetSeconds": int(response.headers["ratelimit-reset"]),
    }


def cost_of(response: httpx.Response) -> dict[str, Any]:
    cost: dict[str, Any] = response.json()["extensions"]["cost"]
    return cost


def points(burst: int) -> dict[str, Any]:
    """Settings changes for a server whose keys hold `burst` points and regain ~none."""
    return {
        "rate_limit_per_second": 1000,
        "rate_limit_burst": 1000,
        "rate_limit_points_per_second": SLOW_REFILL,
        "rate_limit_points_burst": burst,
    }


# The buckets


def test_a_bucket_grants_its_burst_then_refuses() -> None:
    buckets = TokenBuckets(rate=2, burst=3)

    assert [buckets.take("k", now=10.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("k", now=10.0) == 0.5


def test_a_bucket_refills_at_its_rate() -> None:
    buckets = TokenBuckets(rate=2, burst=3)
    for _ in range(3):
        buckets.take("k", now=10.0)

    assert buckets.take("k", now=10.5) == 0
    assert buckets.take("k", now=10.5) > 0


def test_a_bucket_refuses_an_amount_it_does_not_hold_and_takes_nothing() -> None:
    buckets = TokenBuckets(rate=10, burst=100)
    buckets.take("k", now=0.0, amount=70)

    assert buckets.take("k", now=0.0, amount=40) == 1.0
    assert buckets.take("k", now=0.0, amount=30) == 0


def test_buckets_are_independent_per_name() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    buckets.take("a", now=0.0)

    assert buckets.take("b", now=0.0) == 0


def test_the_least_recently_used_bucket_is_evicted_beyond_the_limit() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_buckets=2)
    buckets.take("a", now=0.0)
    buckets.take("b", now=0.0)
    buckets.take("c", now=0.0)

    # "a" was forgotten, so it starts with a full bucket again.
    assert buckets.take("a", now=0.0) == 0


def test_the_budget_headers_report_the_burst_what_is_left_and_when_it_is_full() -> None:
    buckets = TokenBuckets(rate=2, burst=10)
    for _ in range(4):
        buckets.take("k", now=0.0)

    assert dict(buckets.headers("k")) == {
        b"ratelimit-limit": b"10",
        b"ratelimit-remaining": b"6",
        b"ratelimit-reset": b"2",
    }


# The defaults, against the README's own operations at what the server charges them


def readme_operations() -> list[str]:
    """The README's queries and its addMessages example, as written there."""
    blocks = re.findall(r"```graphql\n(.*?)```", README, re.DOTALL)
    return [b for b in blocks if b.startswith("query") or "addMessages(" in b]


async def charges(settings: Settings, database: Database) -> dict[str, int]:
    """What a server with the default budgets charges each README operation (ids that
    match nothing are charged all the same: the estimate does not read them)."""
    _, key = await new_org_key(database)
    defaults = Settings()
    async with (
        serving(
            settings,
            rate_limit_per_second=defaults.rate_limit_per_second,
            rate_limit_points_per_second=defaults.rate_limit_points_per_second,
        ) as (url, _),
        ApiClient(url, key) as api,
    ):
        return {query: cost_of(await api.post(query))["requested"] for query in readme_operations()}


def simulate(per_second: list[int], seconds: int) -> tuple[int, int]:
    """Requests of the given charges, spread evenly over each second for `seconds`, against
    the default request ceiling and points budget: (refused, sent)."""
    defaults = Settings()
    ceiling = TokenBuckets(defaults.rate_limit_per_second, defaults.rate_limit_burst)
    budget = TokenBuckets(defaults.rate_limit_points_per_second, defaults.rate_limit_points_burst)
    refused = 0
    for second in range(seconds):
        for i, charge in enumerate(per_second):
            now = second + i / len(per_second)
            if ceiling.take("k", now=now) or budget.take("k", now=now, amount=charge):
                refused += 1
    return refused, seconds * len(per_second)


async def test_the_defaults_serve_a_backend_of_100_appends_and_100_reads_a_second(
    settings: Settings, database: Database
) -> None:
    charged = await charges(settings, database)
    appends = [cost for query, cost in charged.items() if "addMessages(" in query]
    reads = [cost for query, cost in charged.items() if query.startswith("query")]
    assert len(appends) == 1
    assert len(reads) >= 3
    # Ten seconds of a steady backend reading the README's costliest query each time.
    second = [appends[0], max(reads)] * 100

    assert simulate(second, seconds=10) == (0, 2000)


def test_the_defaults_still_refuse_a_key_hammering_the_api() -> None:
    # 1,000 of the cheapest requests a second for two seconds: the request ceiling.
    refused, _ = simulate([1] * 1000, seconds=2)

    assert refused > 2000 - Settings().rate_limit_burst - 2 * Settings().rate_limit_per_second


def test_the_defaults_refuse_expensive_queries_in_a_loop() -> None:
    defaults = Settings()
    expensive = estimate(EXPENSIVE)
    assert expensive * 10 > defaults.rate_limit_points_per_second
    # A client looping on it, 100 a second for a minute: under the request ceiling, far
    # over the points, so it gets what the points allow (the burst, then the refill).
    refused, sent = simulate([expensive] * 100, seconds=60)
    admitted = sent - refused

    assert (
        admitted
        <= (defaults.rate_limit_points_burst + 60 * defaults.rate_limit_points_per_second)
        / expensive
        + 1
    )
    assert refused > sent * 0.9
    # The costliest operation the cost limit admits runs once from a full bucket.
    assert simulate([defaults.max_query_cost], seconds=1) == (0, 1)
    assert simulate([defaults.max_query_cost] * 2, seconds=1) == (1, 2)


# Over HTTP


async def test_an_operation_is_charged_its_estimate_and_the_headers_say_the_same(
    settings: Settings, database: Database
) -> None:
    _, key = await new_org_key(database)
    async with serving(settings, **points(1000)) as (url, _), ApiClient(url, key) as api:
        first = await api.post(COSTLY)
        second = await api.post(COUNT)

    assert first.status_code == second.status_code == 200
    assert cost_of(first)["requested"] == estimate(COSTLY)
    assert cost_of(second)["requested"] == estimate(COUNT)
    assert cost_of(first)["remaining"] == 1000 - estimate(COSTLY)
    assert cost_of(second)["remaining"] == 1000 - estimate(COSTLY) - estimate(COUNT)
    for response in (first, second):
        cost = cost_of(response)
        assert budget_headers(response) == {k: cost[k] for k in budget_headers(response)}
        assert cost["limit"] == 1000
        assert cost["resetSeconds"] > 0


async def test_a_costly_query_drains_the_budget_faster_than_a_cheap_one(
    settings: Settings, database: Database
) -> None:
    costly = estimate(COSTLY)
    burst = 4 * costly + costly // 2
    _, key = await new_org_key(database)
    _, other_key = await new_org_key(database)
    async with (
        serving(settings, **points(burst)) as (url, _),
        ApiClient(url, key) as api,
        ApiClient(url, other_key) as other,
    ):
        heavy = [await api.post(COSTLY) for _ in range(5)]
        light = [await other.post(COUNT) for _ in range(5)]

    assert [r.status_code for r in heavy] == [200, 200, 200, 200, 429]
    assert [r.status_code for r in light] == [200] * 5
    assert cost_of(heavy[3])["remaining"] == burst - 4 * costly
    assert cost_of(light[3])["remaining"] == burst - 4 * estimate(COUNT)
    refused = heavy[4]
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == int(refused.headers["retry-after"]) >= 1
    assert f"costs {costly} points" in error["message"]
    assert "data" not in refused.json()
    # Refused, it took nothing: what was left is still left.
    assert cost_of(refused) == {**cost_of(heavy[3]), "requested": costly}
    assert budget_headers(refused)["remaining"] == burst - 4 * costly


async def test_a_mutation_over_budget_is_refused_and_changes_nothing(
    settings: Settings, database: Database
) -> None:
    burst = 20
    org_id, key = await new_org_key(database)
    async with serving(settings, **points(burst)) as (url, _), ApiClient(url, key) as api:
        drained = await api.post(ids_page(burst - 1))
        refused = await api.post(CREATE_SESSION_ID, {"input": {"name": "over budget"}})

    assert cost_of(drained)["remaining"] == 0
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await database.sessions.count_documents({"org_id": org_id}) == 0


async def test_each_key_has_a_budget_of_its_own(settings: Settings, database: Database) -> None:
    _, key = await new_org_key(database)
    _, other_key = await new_org_key(database)
    async with (
        serving(settings, **points(100)) as (url, _),
        ApiClient(url, key) as api,
        ApiClient(url, other_key) as other,
    ):
        drained = await api.post(ids_page(98))
        neighbour = await other.post(ids_page(9))

    assert cost_of(drained)["remaining"] == 1
    assert cost_of(neighbour)["remaining"] == 90


async def key_and_tokens(
    settings: Settings, database: Database, count: int
) -> tuple[str, list[str]]:
    """A new organization's API key and `count` read-only access tokens of that key."""
    org_id, key = await new_org_key(database)
    key_id = await key_id_of(database, org_id)
    mint = signer(settings).mint
    tokens = [
        mint(org_id, key_id, ttl_seconds=600, read_only=True, session_ids=None)[0]
        for _ in range(count)
    ]
    return key, tokens


async def test_access_tokens_draw_on_their_key_s_budget(
    settings: Settings, database: Database
) -> None:
    key, tokens = await key_and_tokens(settings, database, 3)
    async with serving(settings, **points(100)) as (url, _):
        async with ApiClient(url, key) as api:
            by_key = await api.post(ids_page(29))
        by_tokens = []
        for token in tokens:
            async with ApiClient(url, token) as holder:
                by_tokens.append(await holder.post(ids_page(29)))

    assert cost_of(by_key)["remaining"] == 70
    assert [cost_of(r)["remaining"] for r in by_tokens[:2]] == [40, 10]
    # Minting another token does not buy more: the third is refused.
    assert by_tokens[2].status_code == 429


async def test_the_request_ceiling_refuses_before_parsing_and_reports_itself(
    settings: Settings, database: Database
) -> None:
    _, key = await new_org_key(database)
    _, other_key = await new_org_key(database)
    async with (
        serving(settings, rate_limit_per_second=0.05, rate_limit_burst=3) as (url, _),
        ApiClient(url, key) as api,
        ApiClient(url, other_key) as other,
    ):
        answers = [await api.post(COUNT) for _ in range(3)]
        refused = await api.http.post(
            "/graphql", content=b"{not json", headers={"content-type": "application/json"}
        )
        neighbour = await other.post(COUNT)

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    # Priced answers report the points; the refusal, the ceiling that refused it.
    for answer in answers:
        assert budget_headers(answer)["remaining"] == cost_of(answer)["remaining"]
    assert refused.status_code == 429
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-limit"] == "3"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert neighbour.status_code == 200


async def test_access_tokens_share_their_key_s_request_ceiling(
    settings: Settings, database: Database
) -> None:
    key, tokens = await key_and_tokens(settings, database, 4)
    # The key's id is known to the ceiling once the key has authenticated (and cached).
    async with serving(
        settings, rate_limit_per_second=0.05, rate_limit_burst=3, auth_cache_seconds=60
    ) as (url, _):
        async with ApiClient(url, key) as api:
            by_key = [await api.post(COUNT) for _ in range(2)]
        by_tokens = []
        for token in tokens:
            async with ApiClient(url, token) as holder:
                by_tokens.append(await holder.post(COUNT))

    assert [r.status_code for r in by_key] == [200, 200]
    # The key's second request and two tokens' take the key's three; the rest are refused.
    assert [r.status_code for r in by_tokens] == [200, 200, 429, 429]


# Live transports


async def test_websocket_operations_and_subscription_starts_are_charged(
    settings: Settings, database: Database
) -> None:
    page = estimate(ids_page(14))
    _, key = await new_org_key(database)
    async with (
        serving(settings, **points(40)) as (url, _),
        ApiClient(url, key) as api,
        connected(url, key) as ws,
    ):
        created = await api.post(CREATE_SESSION_ID, {"input": {"name": "live"}})
        session_id = created.json()["data"]["createSession"]["id"]
        await ws.subscribe("q1", ids_page(14))
        answered = await ws.receive()
        await ws.subscribe("live", MESSAGE_ADDED, {"id": session_id})
        after_start = await api.post(COUNT)
        await ws.subscribe("q2", ids_page(30))
        refused = await ws.receive()
        while refused.get("id") != "q2":
            refused = await ws.receive()

    start = cost_of(created)["remaining"]
    assert answered["payload"]["extensions"]["cost"] == {
        **answered["payload"]["extensions"]["cost"],
        "requested": page,
        "remaining": start - page,
    }
    # The subscription's start cost its estimate (1); the count, 1 more.
    assert cost_of(after_start)["remaining"] == start - page - 1 - 1
    assert estimate(ids_page(30)) > cost_of(after_start)["remaining"]
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert refused["payload"][0]["extensions"]["retryAfter"] >= 1


async def test_an_sse_operation_over_budget_gets_429(
    settings: Settings, database: Database
) -> None:
    _, key = await new_org_key(database)
    async with serving(settings, **points(10)) as (url, _):
        async with ApiClient(url, key) as api:
            drained = await api.post(ids_page(8))
        async with sse(url, key, ids_page(8)) as reader:
            refused = reader.response
            await refused.aread()

    assert cost_of(drained)["remaining"] == 1
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
