"""Which browser origins may open a live connection: SESSIONGRAPH_CORS_ORIGINS, as for CORS.

A request without `Origin` comes from a server-side client and is served. A page of a
listed origin is served, and so is a page of the API's own origin (the /console): its
`Origin` names the request's own host, with the request's scheme, or https where TLS ends
in a proxy in front of the server. Any other page is refused: a websocket before it is
accepted (HTTP 403), an SSE request with 403 FORBIDDEN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection

_HTTP_SCHEMES = {"ws": "http", "wss": "https"}


class OriginPolicy:
    """The origins allowed to open websockets and SSE streams."""

    def __init__(self, allowed: Iterable[str]) -> None:
        origins = [origin.rstrip("/").lower() for origin in allowed]
        self.any = "*" in origins
        self.allowed = frozenset(origins)

    def allows(self, connection: HTTPConnection[Any]) -> bool:
        """Whether the request's `Origin`, if it has one, may be served."""
        origin = connection.headers.get("origin")
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if self.any or origin in self.allowed:
            return True
        host = connection.headers.get("host", "").lower()
        scheme = _HTTP_SCHEMES.get(connection.url.scheme, connection.url.scheme)
        return bool(host) and origin in (f"{scheme}://{host}", f"https://{host}")

    def refusal(self, connection: HTTPConnection[Any]) -> str:
        """The message refusing the request's origin."""
        origin = connection.headers.get("origin", "")[:200]
        return (
            f"Origin {origin!r} is not allowed: list it in SESSIONGRAPH_CORS_ORIGINS to serve "
            "its pages."
        )
