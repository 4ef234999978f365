"""A small GraphQL-over-HTTP client for the tests."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx


class GraphQLErrors(AssertionError):
    """The response carried errors where the test expected none."""


class ApiClient:
    """Posts operations to /graphql with an API key."""

    def __init__(self, base_url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, **kwargs
        )

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole response body: `data` and any `errors`."""
        response = await self.post(query, variables)
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a response that must have no errors."""
        body = await self.execute(query, variables)
        if body.get("errors"):
            raise GraphQLErrors(body["errors"])
        result: dict[str, Any] = body["data"]
        return result

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The single error of a response that must fail."""
        body = await self.execute(query, variables)
        errors = body.get("errors")
        assert errors, f"expected an error, got {body}"
        assert len(errors) == 1, errors
        error: dict[str, Any] = errors[0]
        return error
