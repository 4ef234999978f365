"""Per-key rate limiting: a token bucket per API key, 429 RATE_LIMITED with Retry-After."""

from __future__ import annotations

from sessiongraph.app import create_app
from sessiongraph.rate_limit import TokenBuckets
from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.keys import new_org_key
from tests.serving import bound_socket, serve

COUNT = "{ sessions { totalCount } }"


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


def test_the_defaults_serve_a_backend_of_100_appends_and_100_reads_a_second() -> None:
    defaults = Settings()
    buckets = TokenBuckets(defaults.rate_limit_per_second, defaults.rate_limit_burst)
    # Ten seconds of a steady backend, in simulated time: an append and a read every 10 ms.
    waits = [buckets.take("backend", now=tick / 100) for tick in range(1000) for _ in range(2)]

    assert max(waits) == 0


def test_the_defaults_still_refuse_a_key_hammering_the_api() -> None:
    defaults = Settings()
    buckets = TokenBuckets(defaults.rate_limit_per_second, defaults.rate_limit_burst)
    # 1,000 requests a second for two seconds.
    waits = [buckets.take("abuser", now=tick / 1000) for tick in range(2000)]

    assert sum(wait > 0 for wait in waits) > 1000 - defaults.rate_limit_burst


def test_the_budget_headers_report_the_burst_what_is_left_and_when_it_is_full() -> None:
    buckets = TokenBuckets(rate=2, burst=10)
    for _ in range(4):
        buckets.take("k", now=0.0)

    assert dict(buckets.headers("k")) == {
        b"ratelimit-limit": b"10",
        b"ratelimit-remaining": b"6",
        b"ratelimit-reset": b"2",
    }


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    settings: Settings, database: Database
) -> None:
    limited = create_app(
        settings.model_copy(update={"rate_limit_per_second": 0.05, "rate_limit_burst": 3})
    )
    _, key = await new_org_key(database)
    _, other_key = await new_org_key(database)
    async with (
        serve(limited, bound_socket()) as url,
        ApiClient(url, key) as api,
        ApiClient(url, other_key) as other,
    ):
        answers = [await api.post(COUNT) for _ in range(3)]
        refused = await api.post(COUNT)
        neighbour = await other.post(COUNT)

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [answer.headers["ratelimit-remaining"] for answer in answers] == ["2", "1", "0"]
    assert refused.status_code == 429
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-limit"] == "3"
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert neighbour.status_code == 200
