"""What every benchmark needs: a database, server processes, a key, and memory readings.

The benchmarked server runs as its own process (`sessiongraph serve`), exactly as deployed,
against a SecantusDB started here (or MONGODB_URI when set).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pymongo import monitoring

from sessiongraph.embedded import EmbeddedDatabase, free_port
from storage import ApiKeyStore, Database, NewSession

RESULTS = Path(__file__).parent / "results"
WRK_MISSING = (
    "wrk (the HTTP load generator) is not installed. On Debian or Ubuntu: "
    "`apt-get install -y wrk`; on macOS: `brew install wrk`."
)


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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have ended (wrk runs, for instance)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    """A running server process: `sessiongraph serve`, or the baseline of bench.http."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def memory_kib(self) -> tuple[int, int]:
        """(current, peak) resident memory; with --workers above 1, of the supervisor only."""
        return rss_kib(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


@dataclass
class Bench:
    """A database and an API key of a fresh organization."""

    uri: str
    db_name: str
    key: str
    servers: list[Server] = field(default_factory=list)
    db_pid: int | None = None
    """The SecantusDB process started for the run (None with MONGODB_URI)."""
    db: Database | None = None
    """A connection of the bench's own, for the database's counters (`reads_so_far`)."""

    async def reads_so_far(self) -> int:
        """Queries and getMores the database has answered so far (serverStatus opcounters),
        whoever sent them: a server measured alone sends nearly all of them."""
        if self.db is None:
            return 0
        counters = (await self.db.client.admin.command("serverStatus"))["opcounters"]
        return int(counters.get("query", 0)) + int(counters.get("getmore", 0))

    def environment(self, **env: str) -> dict[str, str]:
        """The environment of a server process on this database."""
        return {
            **os.environ,
            "MONGODB_URI": self.uri,
            "SESSIONGRAPH_DB_NAME": self.db_name,
            "SESSIONGRAPH_LOG_LEVEL": "WARNING",
            **env,
        }

    @asynccontextmanager
    async def server(
        self, *args: str, module: str = "sessiongraph.cli", **env: str
    ) -> AsyncIterator[Server]:
        """`python -m <module> serve` (the `sessiongraph` command) on a free port, stopped
        (SIGTERM) afterwards. `args` are extra options of `serve` (such as --workers 2);
        `env` overrides settings (SESSIONGRAPH_...)."""
        port = free_port()
        argv = [sys.executable, "-m", module, "serve", "--port", str(port), *args]
        async with spawn(argv, port, self.environment(**env)) as server:
            yield server

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"Authorization": f"Bearer {self.key}"}, timeout=60)


@asynccontextmanager
async def spawn(argv: Sequence[str], port: int, env: dict[str, str]) -> AsyncIterator[Server]:
    """A server process answering /healthz on `port`, stopped (SIGTERM) afterwards."""
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL)
    server = Server(process, port)
    try:
        await _wait_healthy(port, process=process)
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def serve_in_process(app: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn in this process's event loop on a free port; its base URL.
    For measurements that must see inside the server (PyMongo command monitoring)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws_per_message_deflate=False)
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve(sockets=[sock]))
    try:
        while not instance.started:
            if task.done():
                raise RuntimeError("the in-process server stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        instance.should_exit = True
        await task
        sock.close()


async def _wait_healthy(
    port: int, seconds: float = 30, process: asyncio.subprocess.Process | None = None
) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"server process exited with code {process.returncode}")
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
    db_pid = embedded.process.pid if embedded is not None and embedded.process else None
    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    db = await Database.connect(uri, db_name)
    try:
        await db.ensure_indexes()
        _, key = await ApiKeyStore(db).create("bench", "bench")
        yield Bench(uri, db_name, key, db_pid=db_pid, db=db)
    finally:
        try:
            await db.client.drop_database(db_name)
            await db.close()
        finally:
            # Even when dropping fails (after a long run the database's connection can be
            # gone), or the database started for the run outlives it.
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


def check_data(body: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a response body that must hold no errors."""
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


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric key, the median over runs (other keys from the first run)."""
    summary: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            summary[key] = statistics.median(run[key] for run in runs)
        else:
            summary[key] = value
    return summary


# Load generation with wrk ----------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
%(headers)s
local bodies = {%(bodies)s}
local index = 0

request = function()
  index = index %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "status_errors": %%d, "timeouts": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def wrk_command() -> str:
    """The path of wrk; exits with install instructions when it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(WRK_MISSING)
    return found


def _lua_string(text: str) -> str:
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


async def wrk(
    url: str,
    bodies: Sequence[str],
    headers: dict[str, str],
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    request_timeout: float = 10,
) -> dict[str, Any]:
    """POST `bodies` (in turn) to `url` for `duration` seconds with wrk; its summary:
    requests/s, latency percentiles in ms, errors, and wrk's own CPU time."""
    script = WRK_SCRIPT % {
        "headers": "\n".join(
            f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()
        ),
        "bodies": ", ".join(_lua_string(body) for body in bodies),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-") as lua:
        lua.write(script)
        lua.flush()
        cpu_before = children_cpu_seconds()
        process = await asyncio.create_subprocess_exec(
            wrk_command(), "--threads", str(threads), "--connections", str(connections),
            "--duration", f"{duration:g}s", "--timeout", f"{request_timeout:g}s",
            "--script", lua.name, url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output = (await process.communicate())[0].decode()
        wrk_cpu = children_cpu_seconds() - cpu_before
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {process.returncode}):\n{output}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.endswith("_errors") or k == "timeouts")
    return {
        "requests": raw["requests"],
        "seconds": seconds,
        "requests_per_s": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "errors": errors,
        "wrk_cpu_s": wrk_cpu,
    }


async def load(
    b: Bench,
    server: Server,
    bodies: Sequence[str],
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    request_timeout: float = 10,
) -> dict[str, Any]:
    """One wrk run against `server` with the bench's key, with the CPU time the server, the
    database (when started here) and wrk spent per request."""
    reads = await b.reads_so_far()
    server_cpu = server.cpu_seconds()
    db_cpu = cpu_seconds(b.db_pid) if b.db_pid else 0.0
    result = await wrk(
        server.url,
        bodies,
        {"Authorization": f"Bearer {b.key}"},
        duration=duration,
        connections=connections,
        threads=threads,
        request_timeout=request_timeout,
    )
    requests = max(result["requests"], 1)
    result["server_cpu_ms_per_request"] = (server.cpu_seconds() - server_cpu) * 1000 / requests
    if b.db_pid:
        result["db_cpu_ms_per_request"] = (cpu_seconds(b.db_pid) - db_cpu) * 1000 / requests
    result["wrk_cpu_ms_per_request"] = result["wrk_cpu_s"] * 1000 / requests
    result["db_reads_per_request"] = (await b.reads_so_far() - reads) / requests
    return result


async def wait_idle(pids: Sequence[int], *, window: float = 0.5, at_most: float = 60) -> float:
    """Wait until the processes `pids` (a server, the database) have together used under 5%
    of a core over `window` seconds: requests wrk left in flight when it stopped are done and
    will not slow the next run. The seconds waited."""
    started = time.monotonic()
    before = sum(cpu_seconds(pid) for pid in pids)
    while time.monotonic() - started < at_most:
        await asyncio.sleep(window)
        after = sum(cpu_seconds(pid) for pid in pids)
        if after - before < 0.05 * window:
            break
        before = after
    return time.monotonic() - started


# Counting database commands ---------------------------------------------------------------


TRANSACTION_ENDS = frozenset({"commitTransaction", "abortTransaction"})


class CommandCounter(monitoring.CommandListener):
    """Counts the commands PyMongo clients of this process send to one database, while
    `counting` is set. Register it (`pymongo.monitoring.register`) before the clients to
    watch are created. Transactions' commits and aborts (sent to `admin`) count too. A
    change stream's own commands and cursor clean-up are left out: they are not work a
    request asked for."""

    def __init__(self) -> None:
        self.db_name: str | None = None
        self.counting = False
        self.commands: Counter[str] = Counter()
        self.durations_ms: dict[str, list[float]] = {}
        self._pending: dict[int, str] = {}

    def start(self, db_name: str) -> None:
        self.db_name = db_name
        self.commands.clear()
        self.durations_ms.clear()
        self._pending.clear()
        self.counting = True

    def stop(self) -> Counter[str]:
        self.counting = False
        return Counter(self.commands)

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.counting:
            return
        name = event.command_name
        ends_transaction = event.database_name == "admin" and name in TRANSACTION_ENDS
        if event.database_name != self.db_name and not ends_transaction:
            return
        command = event.command
        if name in ("killCursors", "endSessions"):
            return
        if name == "getMore" and command.get("collection") == "$cmd.aggregate":
            return  # a database-wide change stream waiting for events
        if name == "aggregate" and any("$changeStream" in s for s in command.get("pipeline", [])):
            return
        target = command.get(name) if name != "getMore" else command.get("collection")
        key = f"{name} {target}" if isinstance(target, str) else name
        self.commands[key] += 1
        self._pending[event.request_id] = key

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        key = self._pending.pop(event.request_id, None)
        if key is not None:
            self.durations_ms.setdefault(key, []).append(event.duration_micros / 1000)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def plain_session(name: str) -> NewSession:
    """A new active session of an hour with nothing but its name, as the storage benches store."""
    return {
        "name": name,
        "status": "active",
        "expiration_seconds": 3600,
        "assistant_id": None,
        "assistant": None,
        "customer": None,
        "phone_number_id": None,
        "phone_number": None,
        "phone_number_secrets": None,
    }
