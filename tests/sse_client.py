"""A small GraphQL-over-SSE client for the tests: httpx streaming, events parsed as an
EventSource would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.ws_client import WAIT_SECONDS

EVENT_STREAM = "text/event-stream"


@dataclass
class Event:
    """One server-sent event (a comment line, as keep-alives send, is `comment`)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: bool = False

    def json(self) -> Any:
        assert self.data is not None, self
        return json.loads(self.data)


class EventReader:
    """The events of one streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within: float = WAIT_SECONDS, *, comments: bool = False) -> Event:
        """The next event (keep-alive comments skipped unless `comments`)."""
        async with asyncio.timeout(within):
            while True:
                event = await self._event()
                if comments or not event.comment:
                    return event

    async def _event(self) -> Event:
        event = Event()
        data: list[str] = []
        seen = False
        async for line in self._lines:
            if line == "":
                if seen:
                    event.data = "\n".join(data) if data else None
                    return event
                continue
            seen = True
            if line.startswith(":"):
                event.comment = True
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event.event = value
            elif name == "id":
                event.id = value
            elif name == "data":
                data.append(value)
        raise EOFError("the stream ended")

    async def results(self, within: float = WAIT_SECONDS) -> list[dict[str, Any]]:
        """The payload of every `next` event up to `complete`."""
        results = []
        while (event := await self.next(within)).event == "next":
            results.append(event.json())
        assert event.event == "complete", event
        return results

    async def ended(self, within: float = WAIT_SECONDS) -> list[Event]:
        """Read until the stream ends; the events read meanwhile."""
        events = []
        async with asyncio.timeout(within):
            while True:
                try:
                    events.append(await self._event())
                except EOFError:
                    return events


@asynccontextmanager
async def sse(
    base_url: str,
    key: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    access_token: str | None = None,
) -> AsyncIterator[EventReader]:
    """An SSE request for `query`; yields a reader of its response (any status). GET may
    carry `access_token` in its URL, as an EventSource does."""
    sent = {"Accept": EVENT_STREAM, **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        if method == "POST":
            body = {"query": query, "variables": variables or {}}
            request = http.build_request("POST", "/graphql", json=body, headers=sent)
        else:
            params = {"query": query}
            if variables is not None:
                params["variables"] = json.dumps(variables)
            if access_token is not None:
                params["access_token"] = access_token
            request = http.build_request("GET", "/graphql", params=params, headers=sent)
        response = await http.send(request, stream=True)
        try:
            yield EventReader(response)
        finally:
            await response.aclose()
