"""Serving an app with uvicorn inside the test's event loop, and a server of its own for
tests that need settings of their own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette

from sessiongraph.app import create_app
from sessiongraph.server import Server
from sessiongraph.settings import Settings


@asynccontextmanager
async def serve(app: Starlette, sock: socket.socket) -> AsyncIterator[str]:
    """`app` served by uvicorn on the bound socket `sock` until the block ends; yields its
    base URL. Binding first means no other process can take the port in between."""
    config = uvicorn.Config(
        app, log_level="warning", ws_per_message_deflate=False, timeout_graceful_shutdown=5
    )
    # Apps of the tests themselves (receivers, peers) have no live engine.
    instance = Server(config, getattr(app.state, "live", None))
    task = asyncio.create_task(instance.serve(sockets=[sock]))
    try:
        while not instance.started:
            if task.done():
                try:
                    task.result()
                except SystemExit as exit:
                    # uvicorn exits when the app fails to start; an exit would stop the loop.
                    raise RuntimeError(f"the app failed to start (exit {exit.code})") from None
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.02)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        instance.should_exit = True
        await task


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1.

    Made with IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    and without it every small response waits ~40 ms for the client's delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(settings: Settings, **changes: Any) -> AsyncIterator[tuple[str, Starlette]]:
    """A server of its own, with `changes` applied to `settings`, on a free port; yields its
    base URL and its app (whose `state.services` is live inside the block)."""
    sock = bound_socket()
    app = create_app(settings.model_copy(update={**changes, "port": sock.getsockname()[1]}))
    async with serve(app, sock) as url:
        yield url, app
