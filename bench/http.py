"""HTTP: throughput and latency of representative queries under load, against a baseline.

Two servers run side by side on one database with the same seeded data, each in its own
process, under uvicorn with the same settings (one worker, uvicorn's default loop and HTTP
implementation: uvloop and httptools when installed):

- the GraphQL server, `sessiongraph serve`, with rate limiting OFF
  (SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0; the default 250/s per key would cap the benchmark);
- the baseline (bench/baseline.py): a minimal Starlette app giving the same JSON for the same
  requests with the same database commands, the same key check and orjson.

wrk (one thread, so the load generator stays light on a small machine) POSTs each operation
for a fixed time over a fixed number of keep-alive connections; runs alternate between the two
servers. Reported: requests/s and latency (p50, p99) per server, and GraphQL ÷ baseline
requests/s. The load generator, both servers and the database share the machine.

Operations (SessionById rotates over --rotate sessions):
  SessionById   session(id) { id name status messageCount createdAt updatedAt
                  messages(first: 10) { nodes { id seq role content createdAt } } }
  SessionList   sessions(first: 20) { nodes { id name status messageCount createdAt updatedAt } }

First, a latency check at concurrency 1 (wrk, one keep-alive connection): `sessiongraph serve`
with --workers 1 and --workers 2, under uvloop (the default) and under asyncio's own loop
(bench.serve_asyncio, as where uvloop is not installed), and the baseline. A request should
take a few milliseconds; ~40 ms means Nagle's algorithm meets delayed ACKs (no TCP_NODELAY).

Needs wrk: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).

    python -m bench.http                      # 3 runs x 10 s per operation and server
    python -m bench.http --runs 1 --duration 5 --no-latency-check
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from contextlib import AsyncExitStack
from typing import Any

import orjson

from bench.baseline import SESSION_BY_ID, SESSION_LIST
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
    write_result,
    wrk,
    wrk_command,
)
from sessiongraph.embedded import free_port

CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
NO_RATE_LIMIT = {"SESSIONGRAPH_RATE_LIMIT_PER_SECOND": "0"}
STALL_MS = 30.0


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


async def same_answers(b: Bench, graphql: Server, baseline: Server, bodies: list[str]) -> None:
    """Fail unless both servers give the same data for each body."""
    async with b.client() as http:
        for body in bodies:
            answers = []
            for server in (graphql, baseline):
                response = await http.post(
                    server.url, content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
                answers.append(check_data(response.json()))
            if answers[0] != answers[1]:
                raise SystemExit(
                    f"the baseline answers differently:\n{answers[0]}\n---\n{answers[1]}"
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


def _baseline(b: Bench) -> Any:
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
    return spawn(argv, port, b.environment())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions seeded (100)")
    parser.add_argument("--messages", type=int, default=20, help="messages per session (20)")
    parser.add_argument("--rotate", type=int, default=50, help="session ids SessionById cycles")
    parser.add_argument("--latency-seconds", type=float, default=3, help="per latency check")
    parser.add_argument("--no-latency-check", action="store_true", help="skip the check")
    args = parser.parse_args()
    wrk_command()  # fail early, with install instructions, when wrk is missing

    operations: dict[str, list[str]] = {}
    async with bench() as b, AsyncExitStack() as stack:
        graphql = await stack.enter_async_context(b.server(**NO_RATE_LIMIT))
        baseline = await stack.enter_async_context(_baseline(b))
        ids = await seed(b, graphql.url, args.sessions, args.messages)
        operations["SessionById"] = [
            _body(SESSION_BY_ID, "SessionById", id=i) for i in ids[: args.rotate]
        ]
        operations["SessionList"] = [_body(SESSION_LIST, "SessionList", first=20)]
        await same_answers(
            b, graphql, baseline, operations["SessionById"][:5] + operations["SessionList"]
        )
        print(
            f"seeded {len(ids)} sessions x {args.messages} messages; both servers give the "
            "same answers; rate limit off (SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0)"
        )

        latency: list[dict[str, Any]] = []
        if not args.no_latency_check:
            latency = await latency_check(b, operations["SessionById"][0], args.latency_seconds)
            print_table(
                "latency at concurrency 1 (SessionById, one keep-alive connection, wrk)",
                ["server", "requests/s", "p50 ms", "p99 ms", "max ms", "stalled"],
                [
                    [r["server"], r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                     "YES" if r["stalled"] else "no"]
                    for r in latency
                ],
            )  # fmt: skip

        targets = {"graphql": graphql, "baseline": baseline}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            op: {name: [] for name in targets} for op in operations
        }
        for bodies in operations.values():  # warm-up, not measured
            for server in targets.values():
                await wrk(server.url, bodies, {"Authorization": f"Bearer {b.key}"},
                          duration=2, connections=args.connections)  # fmt: skip
        for run in range(args.runs):
            for op, bodies in operations.items():
                for name, server in targets.items():
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
                        f"run {run + 1}/{args.runs} {op:<11} {name:<8} "
                        f"{result['requests_per_s']:7.0f} req/s  p50 {result['p50_ms']:6.1f} ms  "
                        f"p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}"
                    )
        memory = {name: server.memory_kib()[1] / 1024 for name, server in targets.items()}

    rows = []
    results: dict[str, Any] = {}
    for op in operations:
        summary = {name: median_of(runs[op][name]) for name in targets}
        base_rps = summary["baseline"]["requests_per_s"]
        results[op] = {name: {**summary[name], "runs": runs[op][name]} for name in targets}
        for name in targets:
            if name == "baseline":
                continue
            paired = [
                g["requests_per_s"] / base["requests_per_s"]
                for g, base in zip(runs[op][name], runs[op]["baseline"], strict=True)
            ]
            results[op][name]["ratio_to_baseline"] = summary[name]["requests_per_s"] / base_rps
            results[op][name]["ratio_per_run"] = paired
            results[op][name]["ratio_median_of_runs"] = statistics.median(paired)
        for name in targets:
            s = summary[name]
            ratio = results[op][name].get("ratio_to_baseline")
            rows.append(
                [op, name, s["requests_per_s"], s["p50_ms"], s["p99_ms"],
                 s["server_cpu_ms_per_request"], s.get("db_cpu_ms_per_request", "-"),
                 "" if ratio is None else f"{ratio:.2f}"]
            )  # fmt: skip
    print_table(
        f"HTTP load (median of {args.runs} runs; wrk {args.threads} thread, "
        f"{args.connections} connections, {args.duration:g} s)",
        ["operation", "server", "req/s", "p50 ms", "p99 ms", "srv CPU ms/req",
         "db CPU ms/req", "GraphQL/baseline"],
        rows,
    )  # fmt: skip
    by_id_ratio = results["SessionById"]["graphql"]["ratio_to_baseline"]
    bar = by_id_ratio >= 0.80
    print(
        f"\nSessionById GraphQL/baseline {by_id_ratio:.2f} "
        f"(bar >= 0.80: {'met' if bar else 'NOT met'}); peak RSS MiB: "
        + ", ".join(f"{name} {mib:.1f}" for name, mib in memory.items())
    )
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
        "documents": {"SessionById": SESSION_BY_ID.strip(), "SessionList": SESSION_LIST.strip()},
    }
    path = write_result(
        "http",
        {
            "settings": settings,
            "latency_check": latency,
            "results": results,
            "server_peak_rss_mib": memory,
            "bar_session_by_id_ratio_0_80_met": bar,
        },
    )
    print(f"\nwritten to {path}")


def _installed(module: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return fallback
    return module


if __name__ == "__main__":
    asyncio.run(main())
