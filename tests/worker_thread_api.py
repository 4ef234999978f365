"""Driving the real server from Hypothesis tests.

Hypothesis's `@given` runs a synchronous test function many times; it cannot drive the
session's event loop, which serves the app under test. So a fuzzing test (itself async)
builds its strategies, then runs a `@given`-decorated synchronous function in a worker
thread with `asyncio.to_thread`: while the event loop awaits that thread it keeps serving
requests, and the function talks to the server over real HTTP with a synchronous client.
Checks against the database run on the event loop, where its client lives, through `run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

WAIT_SECONDS = 30.0
"""The longest one call from the worker thread may take before the test fails."""


class WorkerThreadApi:
    """A synchronous client of /graphql for code running in a worker thread, and a way to
    await coroutines on the event loop that created it."""

    def __init__(self, base_url: str, key: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=WAIT_SECONDS
        )

    def __enter__(self) -> WorkerThreadApi:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()

    def post(self, query: str, variables: Any = None) -> httpx.Response:
        """POST one operation; `variables` is sent as given, even when not an object."""
        return self.http.post("/graphql", json={"query": query, "variables": variables})

    def execute(self, query: str, variables: Any = None) -> dict[str, Any]:
        """The whole body of a 200 response: `data` and any `errors`."""
        response = self.post(query, variables)
        assert response.status_code == 200, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` on the event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT_SECONDS)


async def in_worker_thread(test: Callable[[], None]) -> None:
    """Run `test` (a `@given` function) in a worker thread while the event loop serves."""
    await asyncio.to_thread(test)
