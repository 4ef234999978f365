"""Which document a GraphQL request over HTTP runs (JSON or SSE): `PersistedDocuments`'
decision, its refusals answered as `HttpProblem`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from sessiongraph.documents import DocumentProblem, RequestDocument
from sessiongraph.http_request import HttpProblem, unavailable_as_problem
from sessiongraph.services import State


async def request_document(
    request: Request[State], org_id: str, names: dict[str, Any]
) -> RequestDocument:
    """The document the request names, or HttpProblem (before anything is parsed)."""
    services = request.state["services"]
    try:
        with unavailable_as_problem():
            return await services.documents.resolve_request(org_id, names)
    except DocumentProblem as problem:
        raise HttpProblem(problem.status, problem.code, str(problem)) from None
