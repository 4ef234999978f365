"""OpenTelemetry tracing, exported by the real OTLP/HTTP exporter to a real receiver (a small
Starlette app decoding the protobuf requests): a span per operation, database commands as its
children, the caller's traceparent continued, trace ids in the JSON log lines."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sessiongraph.app import create_app
from sessiongraph.log_config import JsonFormatter
from sessiongraph.settings import Settings
from sessiongraph.tracing import exporter_names, tracing_from_environment
from tests.serving import bound_socket, serve

CREATE = 'mutation CreateSession { createSession(input: {name: "traced"}) { id } }'
SESSION_BY_ID = "query SessionById($id: ID!) { session(id: $id) { id name } }"
DELETE = "mutation DeleteSession($id: ID!) { deleteSession(id: $id) { id } }"
ANONYMOUS = "{ sessions(first: 1) { totalCount } }"


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    service: str


class Receiver:
    """An OTLP/HTTP traces endpoint keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []

    async def traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            service=str(resource.get("service.name")),
                        )
                    )
        return Response(ExportTraceServiceRequest().SerializeToString(),
                        media_type="application/x-protobuf")  # fmt: skip

    async def span(self, name: str, trace_id: str | None = None) -> ReceivedSpan:
        """The first span called `name` (in `trace_id`), once it has been exported."""
        for _ in range(200):
            for span in self.spans:
                if span.name == name and trace_id in (None, span.trace_id):
                    return span
            await asyncio.sleep(0.05)
        raise AssertionError(f"no span {name!r}; got {[s.name for s in self.spans]}")

    async def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        await asyncio.sleep(0.3)  # the batch processor exports every 50 ms here
        return [s for s in self.spans if s.parent_span_id == parent.span_id]


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.traces, methods=["POST"])])
    async with serve(app, bound_socket()) as url:
        yield receiver, url


@pytest.fixture(scope="module")
def log_lines() -> Iterator[io.StringIO]:
    """What the project's loggers write, as JSON lines (before the traced app starts)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sessiongraph")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
async def traced_server(
    settings: Settings, receiver: tuple[Receiver, str], log_lines: io.StringIO
) -> AsyncIterator[str]:
    """A server whose tracing the OTEL_* variables turned on (only while it was built)."""
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver[1]}/v1/traces",
        "OTEL_SERVICE_NAME": "sessiongraph-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in otel.items():
            env.setenv(name, value)
        app = create_app(settings)
    async with serve(app, bound_socket()) as url:
        yield url


@pytest.fixture
async def http(traced_server: str, org: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {org[1]}"}
    async with httpx.AsyncClient(base_url=traced_server, headers=headers, timeout=30) as client:
        yield client


def traceparent() -> tuple[str, str, str]:
    """(header, trace id, parent span id) of a caller's sampled trace."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def created(http: httpx.AsyncClient) -> str:
    session_id: str = (await http.post("/graphql", json={"query": CREATE})).json()["data"][
        "createSession"
    ]["id"]
    return session_id


async def test_an_operation_is_a_span_named_by_its_type_and_name(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    session_id = await created(http)
    header, trace_id, _ = traceparent()

    await http.post(
        "/graphql",
        json={"query": SESSION_BY_ID, "variables": {"id": session_id}},
        headers={"traceparent": header},
    )

    operation = await receiver[0].span("query SessionById", trace_id)
    request = await receiver[0].span("POST /graphql", trace_id)
    assert operation.parent_span_id == request.span_id
    assert operation.kind == Span.SPAN_KIND_INTERNAL
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.attributes["graphql.operation.name"] == "SessionById"
    assert operation.service == "sessiongraph-test"


async def test_an_incoming_traceparent_is_continued(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    header, trace_id, parent_id = traceparent()

    response = await http.post(
        "/graphql", json={"query": ANONYMOUS}, headers={"traceparent": header}
    )

    request = await receiver[0].span("POST /graphql", trace_id)
    assert request.parent_span_id == parent_id
    assert request.kind == Span.SPAN_KIND_SERVER
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["sessiongraph.request_id"] == response.headers["x-request-id"]
    assert (await receiver[0].span("query", trace_id)).parent_span_id == request.span_id


async def test_database_commands_are_children_of_their_operation(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str], settings: Settings
) -> None:
    session_id = await created(http)
    header, trace_id, _ = traceparent()

    await http.post(
        "/graphql",
        json={"query": SESSION_BY_ID, "variables": {"id": session_id}},
        headers={"traceparent": header},
    )

    operation = await receiver[0].span("query SessionById", trace_id)
    commands = [s for s in await receiver[0].children(operation) if s.kind == Span.SPAN_KIND_CLIENT]
    assert [c.name for c in commands] == ["find sessions"]
    (find,) = commands
    assert find.attributes["db.system.name"] == "mongodb"
    assert find.attributes["db.namespace"] == settings.db_name
    assert find.attributes["db.collection.name"] == "sessions"
    assert session_id not in str(find.attributes)


async def test_an_operation_that_fails_has_an_error_status_and_its_code(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    header, trace_id, _ = traceparent()

    await http.post(
        "/graphql",
        json={"query": DELETE, "variables": {"id": str(uuid.uuid4())}},
        headers={"traceparent": header},
    )

    operation = await receiver[0].span("mutation DeleteSession", trace_id)
    assert operation.status_code == 2  # STATUS_CODE_ERROR
    assert operation.attributes["sessiongraph.error_code"] == "NOT_FOUND"


async def test_no_span_holds_the_api_key(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str], org: tuple[str, str]
) -> None:
    header, trace_id, _ = traceparent()

    await http.post("/graphql", json={"query": ANONYMOUS}, headers={"traceparent": header})

    await receiver[0].span("query", trace_id)
    assert org[1] not in repr(receiver[0].spans)


async def test_json_log_lines_carry_the_trace_id(
    http: httpx.AsyncClient, receiver: tuple[Receiver, str], log_lines: io.StringIO
) -> None:
    header, trace_id, _ = traceparent()

    response = await http.post(
        "/graphql", json={"query": ANONYMOUS}, headers={"traceparent": header}
    )

    request_id = response.headers["x-request-id"]
    await receiver[0].span("POST /graphql", trace_id)
    access = [
        line
        for line in map(orjson.loads, log_lines.getvalue().splitlines())
        if line.get("request_id") == request_id
    ]
    assert len(access) == 1, log_lines.getvalue()[-2000:]
    assert access[0]["trace_id"] == trace_id


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "api"}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_only_the_otel_variables_turn_tracing_on(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert exporter_names(environ) == exporters
    if not exporters:
        assert tracing_from_environment(environ) is None


def traced(app: Starlette) -> bool:
    return any("Tracing" in repr(middleware.cls) for middleware in app.user_middleware)


def test_a_server_without_otel_variables_does_no_tracing_work(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    off = create_app(settings)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    on = create_app(settings)

    assert not traced(off)
    assert traced(on)
