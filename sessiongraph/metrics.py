"""Prometheus metrics: what the server does, served in the text format on GET /metrics.

Every app has a registry of its own (several apps in one process, as in the tests, never
share a series). Label values are bounded: routes are templates, operation names are capped,
error codes and command names come from closed sets, and nothing that identifies an
organization, a key or a session is ever a label.
"""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pymongo import monitoring
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from schema.subscriptions import SUBSCRIPTION_FIELDS

OPERATION_NAME_LIMIT = 200
"""Distinct operation names kept as label values; later ones are counted as "other"."""
COMMAND_NAME_LIMIT = 100
ANONYMOUS = "anonymous"
OTHER = "other"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FANOUT_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class BoundedLabel:
    """Keeps the first `limit` distinct values of a label; later ones become `overflow`."""

    def __init__(self, limit: int, overflow: str = OTHER) -> None:
        self.limit = limit
        self.overflow = overflow
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return self.overflow
        self._seen.add(value)
        return value


def error_code(code: object) -> str:
    """An error code as a label value: one of ours (upper case), else "error"."""
    return code if isinstance(code, str) and _CODE.match(code) else "error"


def subscription_field(field: str | None) -> str:
    """A subscription's root field as a label value: one of the schema's, else "other"."""
    return field if field in SUBSCRIPTION_FIELDS else OTHER


class Metrics:
    """The metrics of one app, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self._operation_names = BoundedLabel(OPERATION_NAME_LIMIT)
        self._command_names = BoundedLabel(COMMAND_NAME_LIMIT)

        self.http_requests = Counter(
            "sessiongraph_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "sessiongraph_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.operations = Counter(
            "sessiongraph_graphql_operations",
            "GraphQL operations, by operation name (anonymous, or other beyond the first "
            f"{OPERATION_NAME_LIMIT}), type and outcome (ok, or the first error's code). "
            "Subscriptions are counted when they end.",
            ["operation", "type", "outcome"],
            registry=registry,
        )
        self.operation_duration = Histogram(
            "sessiongraph_graphql_operation_duration_seconds",
            "Time to run a query or mutation, parsing and validation included.",
            ["operation", "type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.websocket_connections = Gauge(
            "sessiongraph_websocket_connections_active",
            "Open websocket connections.",
            registry=registry,
        )
        self.subscriptions = Gauge(
            "sessiongraph_subscriptions_active",
            "Subscriptions running.",
            registry=registry,
        )
        self.subscriptions_started = Counter(
            "sessiongraph_subscriptions_started",
            "Subscriptions started, by root field.",
            ["field"],
            registry=registry,
        )
        self.subscriptions_ended = Counter(
            "sessiongraph_subscriptions_ended",
            "Subscriptions ended, by root field and reason: complete, client_stop, "
            "disconnect, shutdown, overflow, or an error code.",
            ["field", "reason"],
            registry=registry,
        )
        self.events_delivered = Counter(
            "sessiongraph_subscription_events_delivered",
            "Results sent to subscribers, by root field.",
            ["field"],
            registry=registry,
        )
        self.fanout_latency = Histogram(
            "sessiongraph_subscription_fanout_latency_seconds",
            "Time from a live event's commit (the message's createdAt, the session's "
            "updatedAt) to its result being sent to a subscriber.",
            ["field"],
            buckets=FANOUT_BUCKETS,
            registry=registry,
        )
        self.last_write_latency = Histogram(
            "sessiongraph_subscription_event_last_write_seconds",
            "Time from a live event's commit to the last write of its result to the "
            "subscribers it was handed to (once per event, however many share it).",
            ["field"],
            buckets=FANOUT_BUCKETS,
            registry=registry,
        )
        self.database_command_failures = Counter(
            "sessiongraph_database_command_failures",
            "Database commands that failed, by command name.",
            ["command"],
            registry=registry,
        )
        self.change_stream_restarts = Counter(
            "sessiongraph_change_stream_restarts",
            "Times the event hub's change stream was interrupted and resumed.",
            registry=registry,
        )
        # Label lookups are a lock and a validation each; a request's series are looked
        # up once per distinct label values (bounded, as the labels are) and kept.
        self._http_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._operation_counts: dict[tuple[str, str, str], Counter] = {}
        self._operation_durations: dict[tuple[str, str], Histogram] = {}
        fields = (*sorted(SUBSCRIPTION_FIELDS), OTHER)
        self._delivered = {f: self.events_delivered.labels(f) for f in fields}
        self._fanout = {f: self.fanout_latency.labels(f) for f in fields}
        self._last_write = {f: self.last_write_latency.labels(f) for f in fields}

    # GraphQL operations

    def operation_name(self, name: str | None) -> str:
        """An operation name as a label value."""
        if not name:
            return ANONYMOUS
        if not _NAME.match(name):
            return OTHER
        return self._operation_names(name)

    def observe_operation(
        self, name: str | None, kind: str, outcome: str, seconds: float | None
    ) -> None:
        """Count one operation; `seconds` (None for subscriptions) goes to the histogram."""
        label = self.operation_name(name)
        kind = kind if kind in OPERATION_TYPES else "unknown"
        outcome = error_code(outcome) if outcome != "ok" else "ok"
        count = self._operation_counts.get((label, kind, outcome))
        if count is None:
            count = self.operations.labels(label, kind, outcome)
            self._operation_counts[label, kind, outcome] = count
        count.inc()
        if seconds is not None:
            duration = self._operation_durations.get((label, kind))
            if duration is None:
                duration = self._operation_durations[label, kind] = self.operation_duration.labels(
                    label, kind
                )
            duration.observe(seconds)

    # Subscriptions

    def subscription_started(self, field: str | None) -> None:
        self.subscriptions.inc()
        self.subscriptions_started.labels(subscription_field(field)).inc()

    def subscription_ended(self, field: str | None, reason: str) -> None:
        self.subscriptions.dec()
        self.subscriptions_ended.labels(subscription_field(field), reason).inc()

    def event_delivered(self, field: str | None, committed: float | None) -> None:
        """One result sent to one subscriber, `committed` seconds after the epoch (on the
        fan-out's hot path: no label lookups, no datetime arithmetic)."""
        label = subscription_field(field)
        self._delivered[label].inc()
        if committed is not None:
            self._fanout[label].observe(max(0.0, time.time() - committed))

    def event_written(self, field: str | None, committed: float) -> None:
        """The last subscriber of a live event, committed `committed` seconds after the
        epoch, has been sent its result."""
        self._last_write[subscription_field(field)].observe(max(0.0, time.time() - committed))

    # HTTP

    def http_answered(self, scope: Scope, status: int, seconds: float) -> None:
        """An HTTP request was answered with `status` after `seconds`."""
        method = scope["method"] if scope["method"] in METHODS else OTHER
        route = route_of(scope)
        key = (method, route, status)
        series = self._http_series.get(key)
        if series is None:
            series = self._http_series[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
        series[0].inc()
        series[1].observe(seconds)

    # Database

    def command_failed(self, command_name: str) -> None:
        label = command_name if _NAME.match(command_name) else OTHER
        self.database_command_failures.labels(self._command_names(label)).inc()

    def command_listener(self) -> monitoring.CommandListener:
        """A PyMongo listener counting failed commands, for the client's event_listeners."""
        return CommandFailures(self)

    # Exposition

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: every metric in the Prometheus text format."""
        return Response(
            generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class CommandFailures(monitoring.CommandListener):
    """Counts the database commands that fail (the driver calls it on its own threads too)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.metrics.command_failed(event.command_name)


def route_of(scope: Scope) -> str:
    """The template of the route that served `scope` or, for a request answered before
    routing (a 429, a CORS preflight), of the route it was for; else "unmatched"."""
    route = scope.get("route")
    if route is None:
        router = getattr(scope.get("app"), "router", None)
        for candidate in getattr(router, "routes", ()):
            if isinstance(candidate, BaseRoute) and candidate.matches(scope)[0] is not Match.NONE:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
