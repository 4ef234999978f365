"""Which document a GraphQL request over HTTP runs (JSON or SSE): `PersistedDocuments`'
decision, its refusals answered as `HttpProblem`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from resolvers.error_codes import ErrorCode
from resolvers.errors import UNAVAILABLE_MESSAGE
from sessiongraph.documents import DocumentProblem, RequestDocument
from sessiongraph.http_request import RETRY_AFTER, HttpProblem
from sessiongraph.services import State
from storage import is_database_unavailable


async def request_document(
    request: Request[State], org_id: str, names: dict[str, Any]
) -> RequestDocument:
    """The document the request names, or HttpProblem (before anything is parsed)."""
    services = request.state["services"]
    try:
        return await services.documents.resolve_request(org_id, names)
    except DocumentProblem as problem:
        raise HttpProblem(problem.status, problem.code, str(problem)) from None
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        raise HttpProblem(
            503, ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, RETRY_AFTER
        ) from None
