"""Running servers for the tests: an app served by uvicorn inside the test's event loop, a
server of its own for tests that need settings of their own, and `sessiongraph serve` as a
process of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from sessiongraph.app import create_app
from sessiongraph.embedded import free_port
from sessiongraph.server import Server
from sessiongraph.settings import PROJECT_ROOT, Settings

PROCESS_START_SECONDS = 30.0
"""How long `server_process` waits for a new process to answer /healthz."""
PROCESS_STOP_SECONDS = 15.0
"""How long it waits for a process to stop on SIGTERM before killing its group."""


@asynccontextmanager
async def serve(app: Starlette, sock: socket.socket) -> AsyncIterator[str]:
    """`app` served by uvicorn on the bound socket `sock` until the block ends; yields its
    base URL. Binding first means no other process can take the port in between."""
    config = uvicorn.Config(
        app, log_level="warning", ws_per_message_deflate=False, timeout_graceful_shutdown=5
    )
    # Apps of the tests themselves (receivers, peers) have no live engine.
    parts = getattr(app.state, "parts", None)
    instance = Server(config, parts.live if parts is not None else None)
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


@asynccontextmanager
async def server_process(
    settings: Settings, mongo_uri: str, log_file: Path, workers: int = 1
) -> AsyncIterator[tuple[str, int]]:
    """`sessiongraph serve` as a process of its own on the test database; yields its base
    URL and pid, and stops it (SIGTERM, then SIGKILL for its whole group) when done."""
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "SESSIONGRAPH_DB_NAME": settings.db_name,
        "SESSIONGRAPH_PORT": str(port),
        "SESSIONGRAPH_AUTH_CACHE_SECONDS": "0",
        "SESSIONGRAPH_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "sessiongraph.cli", "serve", "--port", str(port)]
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            "--workers",
            str(workers),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base_url, process, log_file)
        yield base_url, process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), PROCESS_STOP_SECONDS)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def wait_healthy(base_url: str, process: asyncio.subprocess.Process, log_file: Path) -> None:
    """Return once /healthz answers; fail with the process's output if it exits or takes
    longer than PROCESS_START_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_START_SECONDS
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log_file.read_text)
                raise AssertionError(f"the server exited with {process.returncode}:\n{output}")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"no /healthz within {PROCESS_START_SECONDS:g} s")
            await asyncio.sleep(0.1)
