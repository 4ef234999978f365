"""An OTLP/HTTP receiver that counts the spans it is sent and drops them, for measuring
what tracing costs the server (bench.http --otel): `python -m bench.otlp_sink --port N`."""

from __future__ import annotations

import argparse

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

received = {"spans": 0}


async def traces(request: Request) -> Response:
    export = ExportTraceServiceRequest.FromString(await request.body())
    received["spans"] += sum(
        len(scope.spans) for spans in export.resource_spans for scope in spans.scope_spans
    )
    return Response(b"", media_type="application/x-protobuf")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def count(request: Request) -> Response:
    return PlainTextResponse(str(received["spans"]))


app = Starlette(
    routes=[
        Route("/v1/traces", traces, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/spans", count),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
