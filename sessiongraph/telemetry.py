"""OpenTelemetry tracing (the `otel` extra): a span per HTTP request continuing the caller's
W3C `traceparent`, a child span per GraphQL operation named by its type and name, a child of
that per MongoDB command, and the trace id in every log record written meanwhile.

Operation level only: no span per field resolved, which would cost more than the query.
Only `sessiongraph.tracing` imports this, and only when the OTEL_* variables turn it on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from pymongo import monitoring
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from schema.observe import outcome_of

PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
LOGGERS = ("", "sessiongraph", "resolvers", "storage", "strawberry", "uvicorn", "uvicorn.error")


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise RuntimeError(f"OTEL_TRACES_EXPORTER {name!r}: sessiongraph exports otlp or console.")
    for variable in PROTOCOL_VARIABLES:
        protocol = os.environ.get(variable, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise RuntimeError(
                    f"{variable} {protocol!r}: sessiongraph exports OTLP as http/protobuf."
                )
            break
    return OTLPSpanExporter()


class Tracing:
    """A tracer provider of the app's own (service name, sampler, exporters and batching
    from the OTEL_* variables), and the pieces that make spans with it."""

    def __init__(self, exporters: list[str]) -> None:
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "sessiongraph"}))
        self.provider = TracerProvider(resource=resource)
        for name in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        self.tracer = self.provider.get_tracer("sessiongraph")
        self._log_filter = TraceIds()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware: one server span per HTTP request."""
        return RequestSpans(app, self.tracer)

    def schema_extension(self) -> Callable[[], SchemaExtension]:
        """A factory of the schema extension making the operation spans."""
        tracer = self.tracer
        return lambda: OperationSpans(tracer)

    def command_listener(self) -> monitoring.CommandListener:
        """A PyMongo listener making a span per database command of a traced operation."""
        return CommandSpans(self.tracer)

    def start(self) -> None:
        """Put the trace and span ids into the log records of the project's handlers."""
        for name in LOGGERS:
            for handler in logging.getLogger(name).handlers:
                if self._log_filter not in handler.filters:
                    handler.addFilter(self._log_filter)

    def shutdown(self) -> None:
        """Stop adding ids to log records; export the spans still batched (blocking)."""
        for name in LOGGERS:
            for handler in logging.getLogger(name).handlers:
                handler.removeFilter(self._log_filter)
        self.provider.shutdown()


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` (hex) to records written inside a span; the JSON log
    format writes them as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class RequestSpans:
    """One SERVER span per HTTP request, a child of the caller's `traceparent` if any, named
    by method and path (never the query string, which could hold a key)."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        method, path = scope["method"], scope["path"]
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"x-request-id":
                            span.set_attribute("sessiongraph.request_id", value.decode("latin-1"))
                await send(message)

            await self.app(scope, receive, sending)


class OperationSpans(SchemaExtension):
    """A span around each query and mutation, from execution on (once the operation is
    known), named `query SessionById` (the type alone when anonymous). It ends once the
    other extensions have coded the errors: one with errors gets the first one's code and an
    error status. Subscriptions, which last as long as a connection, get none."""

    def __init__(self, tracer: trace.Tracer) -> None:
        super().__init__()
        self.tracer = tracer
        self._span: trace.Span | None = None
        self._token: Token[otel_context.Context] | None = None

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        finally:
            span, token = self._span, self._token
            if span is not None and token is not None:
                otel_context.detach(token)
                result = self.execution_context.result
                outcome = outcome_of(result.errors if result is not None else None)
                if outcome != "ok":
                    span.set_attribute("sessiongraph.error_code", outcome)
                    span.set_status(Status(StatusCode.ERROR, outcome))
                span.end()

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        try:
            kind = context.operation_type
        except Exception:
            kind = None
        if kind is not None and kind is not OperationType.SUBSCRIPTION:
            name = context.operation_name
            attributes = {"graphql.operation.type": kind.value}
            if name:
                attributes["graphql.operation.name"] = name
            self._span = self.tracer.start_span(
                f"{kind.value} {name}" if name else kind.value, attributes=attributes
            )
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        yield


class CommandSpans(monitoring.CommandListener):
    """A CLIENT span per database command sent inside a traced operation (commands of the
    driver's own, and of change streams, have no current span and get none). The command's
    contents are never recorded: only its name, collection and database."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._spans: dict[tuple[Any, int], trace.Span] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not trace.get_current_span().is_recording():
            return
        collection = event.command.get(event.command_name)
        attributes: dict[str, str | int] = {
            "db.system.name": "mongodb",
            "db.namespace": event.database_name,
            "db.operation.name": event.command_name,
        }
        name = event.command_name
        if isinstance(collection, str):
            attributes["db.collection.name"] = collection
            name = f"{event.command_name} {collection}"
        host, port = event.connection_id
        attributes["server.address"] = str(host)
        if port is not None:
            attributes["server.port"] = int(port)
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        self._spans[(event.connection_id, event.request_id)] = span

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        span = self._spans.pop((event.connection_id, event.request_id), None)
        if span is not None:
            span.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        span = self._spans.pop((event.connection_id, event.request_id), None)
        if span is not None:
            # The code name only: a failure's message can quote the values of a document.
            code = event.failure.get("codeName") or str(event.failure.get("code", "failed"))
            span.set_attribute("db.response.status_code", str(event.failure.get("code", "")))
            span.set_status(Status(StatusCode.ERROR, str(code)))
            span.end()
