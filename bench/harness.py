"""What every benchmark needs: a database, server processes, a key, and memory readings.

The benchmarked server runs as its own process (`sessiongraph serve`), exactly as deployed,
against a SecantusDB started here (or MONGODB_URI when set).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sessiongraph.embedded import EmbeddedDatabase, free_port
from storage import ApiKeyStore, Database

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """The machine a result was measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Server:
    """A running `sessiongraph serve` process."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def memory_kib(self) -> tuple[int, int]:
        return rss_kib(self.process.pid)


@dataclass
class Bench:
    """A database and an API key of a fresh organization."""

    uri: str
    db_name: str
    key: str
    servers: list[Server] = field(default_factory=list)

    @asynccontextmanager
    async def server(self, **env: str) -> AsyncIterator[Server]:
        """A server process on a free port, stopped (SIGTERM) afterwards."""
        port = free_port()
        environment = {
            **os.environ,
            "MONGODB_URI": self.uri,
            "SESSIONGRAPH_DB_NAME": self.db_name,
            "SESSIONGRAPH_LOG_LEVEL": "WARNING",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiongraph.cli", "serve", "--port", str(port),
            env=environment, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        server = Server(process, port)
        try:
            await _wait_healthy(port)
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"Authorization": f"Bearer {self.key}"}, timeout=60)


async def _wait_healthy(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not become healthy in {seconds}s")


@asynccontextmanager
async def bench() -> AsyncIterator[Bench]:
    """A database (MONGODB_URI, or a SecantusDB started for the run) and a key."""
    embedded = None
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        embedded = EmbeddedDatabase(data_dir=None)
        embedded.start()
        uri = embedded.uri
    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    db = await Database.connect(uri, db_name)
    try:
        await db.ensure_indexes()
        _, key = await ApiKeyStore(db).create("bench", "bench")
        yield Bench(uri, db_name, key)
    finally:
        await db.client.drop_database(db_name)
        await db.close()
        if embedded is not None:
            embedded.stop()


async def gql(http: httpx.AsyncClient, url: str, query: str, **variables: Any) -> dict[str, Any]:
    """Run an operation that must succeed; its data."""
    response = await http.post(url, json={"query": query, "variables": variables})
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    data: dict[str, Any] = body["data"]
    return data


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Save a result as JSON with the machine it ran on."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = {"benchmark": name, "machine": machine(), "at": at, **result}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    """A plain-text table."""
    cells = [headers, *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
