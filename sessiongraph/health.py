"""The probes: /healthz (the process answers) and /readyz (the database and the change
stream are usable), for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from sessiongraph.services import State

READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request[State]) -> PlainTextResponse:
    """Liveness: the process serves requests."""
    return PlainTextResponse("ok")


async def readyz(request: Request[State]) -> JSONResponse:
    """Readiness: 200 when the database answers a ping and the event hub runs, else 503,
    with a report of each."""
    services = request.state["services"]
    report: dict[str, Any] = {"database": "ok", "events": services.events.mode}
    try:
        await asyncio.wait_for(request.state["database"].ping(), READY_TIMEOUT_SECONDS)
    except Exception as error:
        report["database"] = f"unreachable: {type(error).__name__}"
    if not services.events.running:
        report["events"] = "stopped"
    ready = report["database"] == "ok" and services.events.running
    return JSONResponse({"ready": ready, **report}, status_code=200 if ready else 503)


def health_routes() -> list[BaseRoute]:
    """GET /healthz and /readyz."""
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
