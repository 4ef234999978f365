"""HTTP: throughput and server CPU of representative queries, against a baseline and a Node peer.

Three servers run side by side on one database with the same seeded data, each in its own
process:

- sessiongraph, `sessiongraph serve` (one worker, uvicorn's default loop and HTTP
  implementation: uvloop and httptools), with rate limiting OFF
  (SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0; the default 250/s per key would cap the benchmark);
- the baseline (bench/baseline.py): a minimal Starlette app giving the same JSON for the same
  requests with the same database commands, the same key check and orjson;
- the Yoga peer (bench/yoga/server.js): GraphQL Yoga on Node with the official MongoDB
  driver, the same reads (DataLoaders included) and the same key check. Its packages are
  installed with `npm ci` when bench/yoga/node_modules is missing (needs Node.js 20+).

All three must give the same `data` for the first bodies of each operation before anything is
measured. wrk (one thread) POSTs each operation for a fixed time over a fixed number of
keep-alive connections; runs alternate between the servers (the order rotating each run).
Reported per server: requests/s, latency, **server CPU per request** (the process's
utime + stime over its run ÷ requests), the robust figure on a shared machine, and the
database's reads per request (its serverStatus query + getMore counters over the run; the
servers take turns, so each run's reads are nearly all its server's): equal figures say the
peers do the same database work. And the ratios sessiongraph ÷ baseline and sessiongraph ÷
Yoga of the medians of runs. With --before, the baseline of that tree runs too, and the
sessions' message windows (storage/message_windows.py) are taken out of the database while
that tree's servers run (they stored sessions without them) and put back for the others
(`StoredWindows`). The baseline and the Yoga peer leave the windows out of their reads.

Operations (by session id, rotating over --rotate sessions; lists ask for 20):
  SessionMessages  session(id) { id name status messages(first: 10) { nodes { seq content } } }
  SessionById      session(id) { id name status messageCount createdAt updatedAt
                     messages(first: 10) { nodes { id seq role content createdAt } } }
  SessionListing   sessions(first: 20) { nodes { id name status messageCount updatedAt
                     messages(last: 5) { nodes { seq role content } } } }
  SessionList      sessions(first: 20) { nodes { id name status messageCount createdAt
                     updatedAt } }     (not run by default)

With --latency-check, first a check at concurrency 1 (one keep-alive connection) of
`sessiongraph serve` with --workers 1 and 2, under uvloop and asyncio's own loop, and the
baseline: ~40 ms a request means Nagle's algorithm meets delayed ACKs (no TCP_NODELAY).

With --otel, `sessiongraph +otel` also runs: `sessiongraph serve` with OpenTelemetry tracing on
(OTEL_TRACES_EXPORTER=otlp, exporting over OTLP/HTTP to bench.otlp_sink, which counts and drops
the spans), reported as its ratio to sessiongraph (tracing off).

Needs wrk: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).

    python -m bench.http                      # 3 runs x 10 s per operation and server
    python -m bench.http --runs 1 --duration 5 --operations SessionMessages --no-yoga
    python -m bench.http --before /tmp/before    # git archive <commit> | tar -x -C /tmp/before
    python -m bench.http --python /tmp/venv312/bin/python    # another Python, same code
    python -m bench.http --otel    # also sessiongraph with tracing on: what tracing costs
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson

from bench.baseline import SESSION_BY_ID, SESSION_LIST, SESSION_LISTING, SESSION_MESSAGES
from bench.harness import (
    Bench,
    Server,
    bench,
    check_data,
    gql,
    load,
    median_of,
    print_table,
    spawn,
    wait_idle,
    write_result,
    wrk,
    wrk_command,
)
from sessiongraph.embedded import free_port
from storage.message_windows import UNSET_WINDOWS, WINDOWS_FIELD

CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
NO_RATE_LIMIT = {"SESSIONGRAPH_RATE_LIMIT_PER_SECOND": "0"}
STALL_MS = 30.0
YOGA = Path(__file__).parent / "yoga"
DOCUMENTS = {
    "SessionMessages": SESSION_MESSAGES,
    "SessionById": SESSION_BY_ID,
    "SessionListing": SESSION_LISTING,
    "SessionList": SESSION_LIST,
}
DEFAULT_OPERATIONS = ("SessionMessages", "SessionById", "SessionListing")


def _body(query: str, operation: str, **variables: Any) -> str:
    return orjson.dumps(
        {"query": query, "operationName": operation, "variables": variables}
    ).decode()


async def seed(b: Bench, url: str, sessions: int, messages: int) -> list[str]:
    """Sessions with `messages` messages each (user and assistant in turn); their ids."""
    async with b.client() as http:
        limit = asyncio.Semaphore(8)

        async def one(index: int) -> str:
            lines = [
                {
                    ("user" if n % 2 == 0 else "assistant"): {
                        "content": f"Message {n + 1} of session {index}: "
                        "a line of a conversation about an order, a bill or a booking."
                    }
                }
                for n in range(messages)
            ]
            async with limit:
                data = await gql(
                    http, url, CREATE, input={"name": f"session {index}", "messages": lines}
                )
            session_id: str = data["createSession"]["id"]
            return session_id

        return list(await asyncio.gather(*(one(i) for i in range(sessions))))


BEFORE_WINDOWS = ("sessiongraph before", "baseline before")
"""The servers of the --before tree, which read sessions stored before message windows."""


class StoredWindows:
    """The seeded sessions' message windows (storage/message_windows.py), taken out of the
    database while a server of the --before tree runs, as it stored its sessions, and put
    back for the others: a server that does not use them would otherwise read them along."""

    def __init__(self, db: Any, ids: list[str]) -> None:
        self._sessions = db.sessions
        self._ids = ids
        self._saved: dict[str, dict[str, Any]] = {}
        self.present = True

    async def save(self) -> None:
        cursor = self._sessions.find({"_id": {"$in": self._ids}}, {WINDOWS_FIELD: 1})
        self._saved = {doc.pop("_id"): doc for doc in await cursor.to_list(None)}

    async def stored(self, present: bool) -> None:
        """Make the sessions carry their windows (`present`) or not."""
        if present == self.present:
            return
        if present:
            for session_id, windows in self._saved.items():
                await self._sessions.update_one({"_id": session_id}, {"$set": windows})
        else:
            await self._sessions.update_many({"_id": {"$in": self._ids}}, UNSET_WINDOWS)
        self.present = present


async def same_answers(b: Bench, servers: list[Server], bodies: list[str]) -> None:
    """Fail unless every server gives the same data for each body."""
    async with b.client() as http:
        for body in bodies:
            answers = []
            for server in servers:
                response = await http.post(
                    server.url, content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
                answers.append(check_data(response.json()))
            for server, answer in zip(servers[1:], answers[1:], strict=True):
                if answer != answers[0]:
                    raise SystemExit(
                        f"the server on port {server.port} answers differently:\n"
                        f"{answers[0]}\n---\n{answer}"
                    )


async def latency_check(b: Bench, body: str, seconds: float) -> list[dict[str, Any]]:
    """Single-request latency (one keep-alive connection) of each way of serving."""
    variants: list[tuple[str, str, str]] = [
        ("serve --workers 1", "sessiongraph.cli", "1"),
        ("serve --workers 2", "sessiongraph.cli", "2"),
        ("serve --workers 1, asyncio loop", "bench.serve_asyncio", "1"),
        ("serve --workers 2, asyncio loop", "bench.serve_asyncio", "2"),
    ]
    headers = {"Authorization": f"Bearer {b.key}"}
    results = []
    for label, module, workers in variants:
        async with b.server("--workers", workers, module=module, **NO_RATE_LIMIT) as server:
            await wrk(server.url, [body], headers, duration=1, connections=1)  # warm-up
            measured = await wrk(server.url, [body], headers, duration=seconds, connections=1)
        results.append({"server": label, **measured})
    async with _baseline(b) as server:
        await wrk(server.url, [body], headers, duration=1, connections=1)
        measured = await wrk(server.url, [body], headers, duration=seconds, connections=1)
    results.append({"server": "baseline", **measured})
    for result in results:
        result["stalled"] = result["p50_ms"] > STALL_MS
    return results


def _baseline(b: Bench, source: str | None = None) -> Any:
    """The baseline (bench/baseline.py), or the one of another source tree."""
    port = free_port()
    # -P: not this directory first on the path, so that `source` is imported.
    argv = [sys.executable, "-P", "-m", "bench.baseline", "--port", str(port)]
    env = b.environment()
    env["PYTHONPATH"] = source if source is not None else str(Path(__file__).parent.parent)
    return spawn(argv, port, env)


def _yoga(b: Bench) -> Any:
    """The Node peer (bench/yoga/server.js), its packages installed with `npm ci` first."""
    if not (YOGA / "node_modules").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("bench.http needs Node.js 20+ and npm for the Yoga peer")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=YOGA, check=True)
    node = shutil.which("node") or "node"
    port = free_port()
    return spawn([node, str(YOGA / "server.js"), "--port", str(port)], port, b.environment())


def _served_by(b: Bench, python: str, source: str | None = None) -> Any:
    """`sessiongraph serve` run by another interpreter, or from another source tree (a
    checkout of an earlier commit), as `Bench.server` runs it."""
    port = free_port()
    # -P: not this directory first on the path, so that `source` is imported.
    argv = [python, "-P", "-m", "sessiongraph.cli", "serve", "--port", str(port)]
    env = b.environment(**NO_RATE_LIMIT)
    if source is not None:
        env["PYTHONPATH"] = source
    return spawn(argv, port, env)


def _python_version(python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"py{version.stdout.strip()}"


def _ratios(
    runs: dict[str, list[dict[str, Any]]], name: str, peer: str, key: str
) -> tuple[float, list[float]]:
    """`name` ÷ `peer` of the medians of `key`, and per run."""
    ours = statistics.median(r[key] for r in runs[name])
    theirs = statistics.median(r[key] for r in runs[peer])
    paired = [a[key] / b[key] for a, b in zip(runs[name], runs[peer], strict=True)]
    return ours / theirs, paired


def _otlp_sink(b: Bench) -> Any:
    port = free_port()
    argv = [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)]
    return spawn(argv, port, b.environment())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions seeded (100)")
    parser.add_argument("--messages", type=int, default=20, help="messages per session (20)")
    parser.add_argument("--rotate", type=int, default=50, help="session ids SessionById cycles")
    parser.add_argument(
        "--operations",
        default=",".join(DEFAULT_OPERATIONS),
        help=f"comma-separated, of {', '.join(DOCUMENTS)} ({','.join(DEFAULT_OPERATIONS)})",
    )
    parser.add_argument("--no-yoga", action="store_true", help="leave the Node peer out")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help="also run sessiongraph under this interpreter (a venv's python with the project "
        "installed), compared with the one running this script; repeatable",
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also run sessiongraph from this source tree (such as `git archive` of an "
        "earlier commit), compared with this one",
    )
    parser.add_argument("--latency-seconds", type=float, default=3, help="per latency check")
    parser.add_argument("--latency-check", action="store_true", help="run the check first")
    parser.add_argument("--otel", action="store_true", help="also sessiongraph with tracing on")
    args = parser.parse_args()
    chosen = [op.strip() for op in args.operations.split(",") if op.strip()]
    unknown = [op for op in chosen if op not in DOCUMENTS]
    if unknown:
        raise SystemExit(f"--operations: unknown {unknown}; known: {list(DOCUMENTS)}")
    wrk_command()  # fail early, with install instructions, when wrk is missing

    operations: dict[str, list[str]] = {}
    async with bench() as b, AsyncExitStack() as stack:
        targets: dict[str, Server] = {
            "sessiongraph": await stack.enter_async_context(b.server(**NO_RATE_LIMIT)),
            "baseline": await stack.enter_async_context(_baseline(b)),
        }
        if not args.no_yoga:
            targets["yoga"] = await stack.enter_async_context(_yoga(b))
        for python in args.python:
            name = f"sessiongraph {_python_version(python)}"
            targets[name] = await stack.enter_async_context(_served_by(b, python))
        if args.before:
            served = _served_by(b, sys.executable, source=args.before)
            targets["sessiongraph before"] = await stack.enter_async_context(served)
            targets["baseline before"] = await stack.enter_async_context(
                _baseline(b, source=args.before)
            )
        if args.otel:
            sink = await stack.enter_async_context(_otlp_sink(b))
            sink_url = sink.url.removesuffix("/graphql")
            targets["sessiongraph +otel"] = await stack.enter_async_context(
                b.server(
                    **NO_RATE_LIMIT,
                    OTEL_TRACES_EXPORTER="otlp",
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{sink_url}/v1/traces",
                    OTEL_SERVICE_NAME="sessiongraph-bench",
                )
            )
        ids = await seed(b, targets["sessiongraph"].url, args.sessions, args.messages)
        assert b.db is not None
        windows = StoredWindows(b.db, ids)
        await windows.save()
        for op in chosen:
            if "$id" in DOCUMENTS[op]:
                operations[op] = [_body(DOCUMENTS[op], op, id=i) for i in ids[: args.rotate]]
            else:
                operations[op] = [_body(DOCUMENTS[op], op, first=20)]
        await same_answers(
            b,
            list(targets.values()),
            [body for bodies in operations.values() for body in bodies[:5]],
        )
        print(
            f"seeded {len(ids)} sessions x {args.messages} messages; {', '.join(targets)} give "
            "the same answers; rate limit off (SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0)"
        )

        latency: list[dict[str, Any]] = []
        if args.latency_check:
            first_body = next(iter(operations.values()))[0]
            latency = await latency_check(b, first_body, args.latency_seconds)
            print_table(
                "latency at concurrency 1 (one keep-alive connection, wrk)",
                ["server", "requests/s", "p50 ms", "p99 ms", "max ms", "stalled"],
                [
                    [r["server"], r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                     "YES" if r["stalled"] else "no"]
                    for r in latency
                ],
            )  # fmt: skip

        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            op: {name: [] for name in targets} for op in operations
        }
        for bodies in operations.values():  # warm-up, not measured
            for name, server in targets.items():
                await windows.stored(name not in BEFORE_WINDOWS)
                await wrk(server.url, bodies, {"Authorization": f"Bearer {b.key}"},
                          duration=2, connections=args.connections)  # fmt: skip
        for run in range(args.runs):
            for op, bodies in operations.items():
                # Rotating the order each run, so no server always follows the same one.
                order = list(targets.items())
                order = order[run % len(order) :] + order[: run % len(order)]
                for name, server in order:
                    await windows.stored(name not in BEFORE_WINDOWS)
                    await wait_idle([server.pid, *([b.db_pid] if b.db_pid else [])], at_most=10)
                    result = await load(
                        b,
                        server,
                        bodies,
                        duration=args.duration,
                        connections=args.connections,
                        threads=args.threads,
                    )
                    runs[op][name].append(result)
                    print(
                        f"run {run + 1}/{args.runs} {op:<15} {name:<12} "
                        f"{result['requests_per_s']:7.0f} req/s  p50 {result['p50_ms']:6.1f} ms  "
                        f"p99 {result['p99_ms']:6.1f} ms  "
                        f"CPU {result['server_cpu_ms_per_request']:5.2f} ms/req  "
                        f"db reads {result['db_reads_per_request']:5.2f}/req  "
                        f"errors {result['errors']}"
                    )
        memory = {name: server.memory_kib()[1] / 1024 for name, server in targets.items()}
        # Reported before the database is dropped: a database still busy with the requests
        # wrk left in flight may drop the connection then, and the runs must not be lost.
        _report(args, operations, list(targets), runs, memory, latency)


def _report(
    args: argparse.Namespace,
    operations: dict[str, list[str]],
    targets: list[str],
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    memory: dict[str, float],
    latency: list[dict[str, Any]],
) -> None:
    """Print the tables and write bench/results/http.json."""
    rows = []
    ratio_rows = []
    results: dict[str, Any] = {}
    peers = [name for name in targets if name in ("baseline", "yoga", "baseline before")]
    others = [name for name in targets if name.startswith("sessiongraph ")]  # vs this one
    for op in operations:
        summary = {name: median_of(runs[op][name]) for name in targets}
        results[op] = {name: {**summary[name], "runs": runs[op][name]} for name in targets}
        for name in targets:
            s = summary[name]
            rows.append(
                [op, name, s["requests_per_s"], s["p50_ms"], s["p99_ms"],
                 s["server_cpu_ms_per_request"], s.get("db_cpu_ms_per_request", "-"),
                 f"{s['db_reads_per_request']:.2f}"]
            )  # fmt: skip
        for peer in peers:
            rps, rps_runs = _ratios(runs[op], "sessiongraph", peer, "requests_per_s")
            cpu, cpu_runs = _ratios(runs[op], "sessiongraph", peer, "server_cpu_ms_per_request")
            results[op]["sessiongraph"][f"over_{peer}"] = {
                "requests_per_s": rps,
                "requests_per_s_per_run": rps_runs,
                "server_cpu_per_request": cpu,
                "server_cpu_per_request_per_run": cpu_runs,
            }
            ratio_rows.append(
                [op, f"sessiongraph / {peer}", f"{rps:.2f}", f"{cpu:.2f}",
                 " ".join(f"{r:.2f}" for r in cpu_runs)]
            )  # fmt: skip
        for other in others:
            rps, rps_runs = _ratios(runs[op], other, "sessiongraph", "requests_per_s")
            cpu, cpu_runs = _ratios(runs[op], other, "sessiongraph", "server_cpu_ms_per_request")
            results[op][other]["over_sessiongraph"] = {
                "requests_per_s": rps,
                "requests_per_s_per_run": rps_runs,
                "server_cpu_per_request": cpu,
                "server_cpu_per_request_per_run": cpu_runs,
            }
            ratio_rows.append(
                [op, f"{other} / sessiongraph", f"{rps:.2f}", f"{cpu:.2f}",
                 " ".join(f"{r:.2f}" for r in cpu_runs)]
            )  # fmt: skip
    print_table(
        f"HTTP load (median of {args.runs} runs; wrk {args.threads} thread, "
        f"{args.connections} connections, {args.duration:g} s)",
        [
            "operation",
            "server",
            "req/s",
            "p50 ms",
            "p99 ms",
            "srv CPU ms/req",
            "db CPU ms/req",
            "db reads/req",
        ],
        rows,
    )
    print_table(
        "ratios (of medians)",
        ["operation", "ratio", "req/s", "srv CPU/req", "srv CPU/req per run"],
        ratio_rows,
    )
    goals = _goals(results, peers)
    for goal, met in goals.items():
        print(f"{goal}: {'met' if met else 'NOT met'}")
    print("peak RSS MiB: " + ", ".join(f"{name} {mib:.1f}" for name, mib in memory.items()))
    settings = {
        "runs": args.runs,
        "duration_s": args.duration,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "sessions": args.sessions,
        "messages_per_session": args.messages,
        "rotate_session_ids": args.rotate,
        "rate_limit_per_second": 0,
        "auth_cache_seconds": 5,
        "uvicorn": "workers 1, loop auto, http auto",
        "event_loop": _installed("uvloop", "asyncio"),
        "http_implementation": _installed("httptools", "h11"),
        "python": sys.version.split()[0],
        "node": _node_version() if "yoga" in targets else None,
        "documents": {op: DOCUMENTS[op].strip() for op in operations},
    }
    path = write_result(
        "http",
        {
            "settings": settings,
            "latency_check": latency,
            "results": results,
            "server_peak_rss_mib": memory,
            "goals": goals,
        },
    )
    print(f"\nwritten to {path}")


def _goals(results: dict[str, Any], peers: list[str]) -> dict[str, bool]:
    """Issue 12's goals, per operation: server CPU per request at most 1.5 x the baseline's
    and 1.0 x Yoga's, requests/s at least Yoga's."""
    goals: dict[str, bool] = {}
    for op, by_server in results.items():
        ours = by_server["sessiongraph"]
        if "baseline" in peers:
            cpu = ours["over_baseline"]["server_cpu_per_request"]
            goals[f"{op} CPU/req <= 1.5 x baseline ({cpu:.2f})"] = cpu <= 1.5
        if "yoga" in peers:
            cpu = ours["over_yoga"]["server_cpu_per_request"]
            rps = ours["over_yoga"]["requests_per_s"]
            goals[f"{op} CPU/req <= 1.0 x Yoga ({cpu:.2f})"] = cpu <= 1.0
            goals[f"{op} req/s >= 1.0 x Yoga ({rps:.2f})"] = rps >= 1.0
    return goals


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "-"
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def _installed(module: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return fallback
    return module


if __name__ == "__main__":
    asyncio.run(main())
