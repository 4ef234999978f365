"""The live console at /console.

The console is a static page (HTML, one CSS file, one JavaScript module; no build step) that
talks to the public API only: POST /graphql for the session list and a transcript, and the
graphql-transport-ws websocket on /graphql for live messages. Its files live in
`sessiongraph/static/console/`; its Content-Security-Policy allows nothing but this origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""Scripts, styles, fetches and the websocket from this origin only; no inline code, no
plugins, no form submissions (the key form is handled by script and must never be sent as
a URL), and no framing."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

CONSOLE_FILES = {
    "/console": ("console.html", "text/html; charset=utf-8"),
    "/console/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/console/app.css": ("app.css", "text/css; charset=utf-8"),
}


def _static_route(path: str, content: bytes, media_type: str) -> Route:
    async def serve(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    return Route(path, serve, methods=["GET"], name=f"console:{path}")


def console_routes() -> list[BaseRoute]:
    """GET /console and its script and stylesheet, read from the package once."""
    return [
        _static_route(path, (STATIC / "console" / name).read_bytes(), media_type)
        for path, (name, media_type) in CONSOLE_FILES.items()
    ]
