"""GET /metrics: Prometheus text with exact counts of what the server did.

Each test scrapes before and after what it does and checks the difference, on the shared
server (operation names are the tests' own), or on a server of its own where a database
fault is injected. Values that the server updates after the client has its answer (a
websocket frame is counted once its send returns) are polled for, bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.faults import failing, failpoint_database
from tests.serving import serving
from tests.ws_client import WAIT_SECONDS, connected

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

METRIC_FAMILIES = {
    "sessiongraph_http_requests": "counter",
    "sessiongraph_http_request_duration_seconds": "histogram",
    "sessiongraph_graphql_operations": "counter",
    "sessiongraph_graphql_operation_duration_seconds": "histogram",
    "sessiongraph_websocket_connections_active": "gauge",
    "sessiongraph_subscriptions_active": "gauge",
    "sessiongraph_subscriptions_started": "counter",
    "sessiongraph_subscriptions_ended": "counter",
    "sessiongraph_subscription_events_delivered": "counter",
    "sessiongraph_subscription_fanout_latency_seconds": "histogram",
    "sessiongraph_subscription_event_last_write_seconds": "histogram",
    "sessiongraph_database_command_failures": "counter",
    "sessiongraph_change_stream_restarts": "counter",
}

OPERATIONS = "sessiongraph_graphql_operations_total"
OPERATION_SECONDS = "sessiongraph_graphql_operation_duration_seconds_count"
HTTP_REQUESTS = "sessiongraph_http_requests_total"
HTTP_SECONDS = "sessiongraph_http_request_duration_seconds_count"
CONNECTIONS = "sessiongraph_websocket_connections_active"
SUBSCRIPTIONS = "sessiongraph_subscriptions_active"
STARTED = "sessiongraph_subscriptions_started_total"
ENDED = "sessiongraph_subscriptions_ended_total"
DELIVERED = "sessiongraph_subscription_events_delivered_total"
FANOUT = "sessiongraph_subscription_fanout_latency_seconds_count"
LAST_WRITE = "sessiongraph_subscription_event_last_write_seconds_count"
DB_FAILURES = "sessiongraph_database_command_failures_total"
RESTARTS = "sessiongraph_change_stream_restarts_total"

ADD_MESSAGE = """
mutation MetricsAdd($sessionId: ID!) {
  addMessages(sessionId: $sessionId, messages: [{user: {content: "hello"}}]) { seq }
}
"""
MESSAGE_ADDED = """
subscription MetricsWatch($sessionId: ID!) { messageAdded(sessionId: $sessionId) { seq } }
"""
TOO_COMPLEX = """
query MetricsTooComplex {
  sessions(first: 100) { edges { node { messages(first: 500) { edges { node { id } } } } } }
}
"""


async def scrape(base_url: str) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base_url}/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series that has not been created yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until_value(base_url: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until the sample `name{labels}` is `expected` (failing after WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        samples = await scrape(base_url)
        found = value(samples, name, **labels)
        if found == expected:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} is {found}, expected {expected}")
        await asyncio.sleep(0.05)


# The endpoint


async def test_metrics_are_served_as_prometheus_text_without_a_key(server: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families.items() >= METRIC_FAMILIES.items()


async def test_metrics_can_be_turned_off(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics": False}))

    paths = {getattr(route, "path", None) for route in app.routes}
    assert "/metrics" not in paths
    assert "/healthz" in paths


async def test_no_organization_or_key_appears_in_the_metrics(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, name="metrics")
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await api.data(ADD_MESSAGE, {"sessionId": session_id})
        await client.data("1")

    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{server}/metrics")).text
    org_id, key = org
    assert org_id not in text
    assert key not in text
    assert session_id not in text


# HTTP requests


async def test_http_requests_are_counted_by_method_route_and_status(server: str) -> None:
    before = await scrape(server)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server}/healthz")).status_code == 200
        assert (await client.get(f"{server}/healthz")).status_code == 200
        unauthenticated = await client.post(f"{server}/graphql", json={"query": "{ __typename }"})
        missing = await client.get(f"{server}/no/such/{uuid.uuid4().hex}")
    after = await scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert unauthenticated.status_code == 401
    assert missing.status_code == 404
    assert delta(HTTP_REQUESTS, method="GET", route="/healthz", status="200") == 2
    assert delta(HTTP_SECONDS, method="GET", route="/healthz") == 2
    assert delta(HTTP_REQUESTS, method="POST", route="/graphql", status="401") == 1
    # Unknown paths share one series: label values stay bounded.
    assert delta(HTTP_REQUESTS, method="GET", route="unmatched", status="404") == 1


# GraphQL operations


async def test_a_named_query_is_counted_once_as_ok_and_timed(server: str, api: ApiClient) -> None:
    labels = {"operation": "MetricsProbe", "type": "query"}
    before = await scrape(server)
    await api.data("query MetricsProbe { sessions(first: 1) { totalCount } }")
    after = await scrape(server)

    assert (
        value(after, OPERATIONS, **labels, outcome="ok")
        - value(before, OPERATIONS, **labels, outcome="ok")
        == 1
    )
    assert (
        value(after, OPERATION_SECONDS, **labels) - value(before, OPERATION_SECONDS, **labels) == 1
    )


async def test_an_anonymous_query_is_counted_as_anonymous(server: str, api: ApiClient) -> None:
    labels = {"operation": "anonymous", "type": "query", "outcome": "ok"}
    before = await scrape(server)
    await api.data("{ sessions(first: 1) { totalCount } }")
    after = await scrape(server)

    assert value(after, OPERATIONS, **labels) - value(before, OPERATIONS, **labels) == 1


@pytest.mark.parametrize(
    ("document", "name", "kind", "outcome"),
    [
        (
            'mutation MetricsBadInput { createSession(input: {name: "%s"}) { id } }' % ("x" * 41),
            "MetricsBadInput",
            "mutation",
            "BAD_USER_INPUT",
        ),
        (TOO_COMPLEX, "MetricsTooComplex", "query", "QUERY_TOO_COMPLEX"),
        ("query MetricsNoSuchField { noSuchField }", "MetricsNoSuchField", "query", None),
        (
            'subscription MetricsOverPost { sessionUpdated(id: "x") { name } }',
            "MetricsOverPost",
            "subscription",
            "BAD_REQUEST",
        ),
    ],
    ids=["bad-user-input", "too-complex", "validation", "subscription-over-post"],
)
async def test_a_failed_operation_is_counted_with_its_error_code(
    server: str, api: ApiClient, document: str, name: str, kind: str, outcome: str | None
) -> None:
    before = await scrape(server)
    body = await api.execute(document)
    after = await scrape(server)

    code = body["errors"][0]["extensions"]["code"]
    assert code == (outcome or "GRAPHQL_VALIDATION_FAILED")
    labels = {"operation": name, "type": kind, "outcome": code}
    assert value(after, OPERATIONS, **labels) - value(before, OPERATIONS, **labels) == 1
    assert value(after, OPERATIONS, operation=name, type=kind, outcome="ok") == 0


async def test_a_document_that_does_not_parse_is_counted_with_an_unknown_type(
    server: str, api: ApiClient
) -> None:
    labels = {"operation": "anonymous", "type": "unknown", "outcome": "GRAPHQL_PARSE_FAILED"}
    before = await scrape(server)
    body = await api.execute("{ sessions(")
    after = await scrape(server)

    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert value(after, OPERATIONS, **labels) - value(before, OPERATIONS, **labels) == 1


# Websockets and subscriptions


async def test_a_subscription_is_counted_while_it_runs_and_its_events_are_delivered(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, name="metrics")
    before = await scrape(server)
    connections = value(before, CONNECTIONS)
    running = value(before, SUBSCRIPTIONS)
    field = {"field": "messageAdded"}

    async with connected(server, org[1]) as client:
        await until_value(server, CONNECTIONS, connections + 1)
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        during = await until_value(server, SUBSCRIPTIONS, running + 1)
        await api.data(ADD_MESSAGE, {"sessionId": session_id})
        assert await client.data("1") == {"messageAdded": {"seq": 1}}
        delivered = await until_value(
            server, DELIVERED, value(before, DELIVERED, **field) + 1, **field
        )
        await client.complete("1")
        await until_value(server, SUBSCRIPTIONS, running)
    after = await until_value(server, CONNECTIONS, connections)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(during, STARTED, **field) - value(before, STARTED, **field) == 1
    assert delta(STARTED, **field) == 1
    assert delta(DELIVERED, **field) == 1
    assert value(delivered, FANOUT, **field) - value(before, FANOUT, **field) == 1
    assert delta(FANOUT, **field) == 1
    assert delta(ENDED, **field, reason="client_stop") == 1
    operation = {"operation": "MetricsWatch", "type": "subscription", "outcome": "ok"}
    assert delta(OPERATIONS, **operation) == 1


async def test_every_subscription_field_of_the_schema_is_a_label_of_its_own(
    server: str, org: tuple[str, str]
) -> None:
    before = await scrape(server)
    running = value(before, SUBSCRIPTIONS)
    field = {"field": "sessionEvents"}

    async with connected(server, org[1]) as client:
        await client.subscribe("1", "subscription { sessionEvents { type } }", {})
        during = await until_value(server, SUBSCRIPTIONS, running + 1)
        await client.complete("1")
        await until_value(server, SUBSCRIPTIONS, running)

    assert value(during, STARTED, **field) - value(before, STARTED, **field) == 1
    assert value(during, STARTED, field="other") == value(before, STARTED, field="other")


async def test_an_event_shared_by_subscribers_is_timed_once_at_its_last_write(
    server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(api, name="metrics")
    field = {"field": "messageAdded"}
    before = await scrape(server)
    async with connected(server, org[1]) as first, connected(server, org[1]) as second:
        running = value(before, SUBSCRIPTIONS)
        await first.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await second.subscribe("1", MESSAGE_ADDED, {"sessionId": session_id})
        await until_value(server, SUBSCRIPTIONS, running + 2)
        await api.data(ADD_MESSAGE, {"sessionId": session_id})
        assert await first.data("1") == await second.data("1") == {"messageAdded": {"seq": 1}}
        after = await until_value(server, DELIVERED, value(before, DELIVERED, **field) + 2, **field)

    assert value(after, FANOUT, **field) - value(before, FANOUT, **field) == 2
    assert value(after, LAST_WRITE, **field) - value(before, LAST_WRITE, **field) == 1


async def test_a_subscription_to_a_missing_session_ends_with_not_found(
    server: str, org: tuple[str, str]
) -> None:
    field = {"field": "messageAdded"}
    before = await scrape(server)
    running = value(before, SUBSCRIPTIONS)
    async with connected(server, org[1]) as client:
        await client.subscribe("1", MESSAGE_ADDED, {"sessionId": str(uuid.uuid4())})
        assert (await client.receive())["payload"]["errors"][0]["extensions"]["code"] == (
            "NOT_FOUND"
        )
        assert (await client.receive())["type"] == "complete"
    after = await until_value(server, SUBSCRIPTIONS, running)

    assert (
        value(after, ENDED, **field, reason="NOT_FOUND")
        - value(before, ENDED, **field, reason="NOT_FOUND")
        == 1
    )
    assert value(after, DELIVERED, **field) == value(before, DELIVERED, **field)
    operation = {"operation": "MetricsWatch", "type": "subscription", "outcome": "NOT_FOUND"}
    assert value(after, OPERATIONS, **operation) - value(before, OPERATIONS, **operation) == 1


# Database failures


BAD_VALUE = 2


@dataclass
class Faulty:
    """A database whose commands fail on demand, and a server of its own on it."""

    url: str
    key: str
    db: Database
    """A direct connection (which arms the failpoints; its commands are not counted)."""


@pytest.fixture(scope="module")
async def faulty(settings: Settings) -> AsyncIterator[Faulty]:
    async with (
        failpoint_database(settings.db_name) as (uri, db, key),
        serving(settings, mongodb_uri=uri, db_timeout_ms=1500) as (url, _),
    ):
        yield Faulty(url, key, db)


def fail_next(db: Database, command: str) -> AbstractAsyncContextManager[None]:
    """While the block runs, the next `command` the database receives fails with BadValue."""
    return failing(db, command, {"times": 1}, errorCode=BAD_VALUE)


async def test_a_failed_database_command_is_counted_by_command_name(faulty: Faulty) -> None:
    before = await scrape(faulty.url)
    async with fail_next(faulty.db, "find"), ApiClient(faulty.url, faulty.key) as api:
        failed = await api.post("{ sessions(first: 1) { totalCount } }")
        answered = await api.execute("{ sessions(first: 1) { totalCount } }")
    after = await scrape(faulty.url)

    assert failed.status_code != 200 or "errors" in failed.json()
    assert "errors" not in answered
    assert (
        value(after, DB_FAILURES, command="find") - value(before, DB_FAILURES, command="find") == 1
    )


async def test_an_interrupted_change_stream_is_counted_as_a_restart(faulty: Faulty) -> None:
    before = await scrape(faulty.url)
    async with fail_next(faulty.db, "getMore"):
        after = await until_value(faulty.url, RESTARTS, value(before, RESTARTS) + 1)

    failures = value(after, DB_FAILURES, command="getMore")
    assert failures - value(before, DB_FAILURES, command="getMore") == 1
