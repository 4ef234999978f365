"""Listing: a page of sessions with each one's last 5 messages. Database commands per request
and requests/s.

    sessions(first: N) { nodes { id name status messageCount updatedAt
                                 messages(last: 5) { nodes { seq role content } } } }

Commands per request are counted with PyMongo's command monitoring: a CommandListener is
registered (pymongo.monitoring.register) before the app builds its client, so this part serves
the app (sessiongraph.app.create_app) with uvicorn in this process's own event loop. It counts
the commands sent to the benchmark's database during a few requests per page size (1, 5, 20, 50,
100), after a warm-up request: once with the API-key cache on (the default, 5 s: the key is
looked up once, then served from the cache) and once with it off
(SESSIONGRAPH_AUTH_CACHE_SECONDS=0: every request looks the key up). Change-stream commands are
not counted (events come from this process here: SESSIONGRAPH_EVENTS_MODE=local).

Requests/s are measured with wrk (one thread, keep-alive connections) against `sessiongraph
serve` in its own process, rate limiting off (SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0), on the
same seeded data. Before each run the script waits until the server and the database are idle
(the requests wrk left in flight are done). Needs wrk: `apt-get install -y wrk`
(Debian/Ubuntu), `brew install wrk`.

    python -m bench.list                     # counts for 1..100, req/s for 1, 20, 100
    python -m bench.list --throughput-sizes 20 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx
import orjson
from pymongo import monitoring

from bench.harness import (
    Bench,
    CommandCounter,
    bench,
    check_data,
    gql,
    load,
    median_of,
    print_table,
    serve_in_process,
    wait_idle,
    write_result,
    wrk,
    wrk_command,
)

# Registered before any client exists: global listeners apply to clients created later.
COUNTER = CommandCounter()
monitoring.register(COUNTER)

LISTING = """
query Listing($first: Int!) {
  sessions(first: $first) {
    nodes {
      id name status messageCount updatedAt
      messages(last: 5) { nodes { seq role content } }
    }
  }
}
"""
CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""
NO_RATE_LIMIT = {"SESSIONGRAPH_RATE_LIMIT_PER_SECOND": "0"}


def _body(first: int) -> str:
    return orjson.dumps(
        {"query": LISTING, "operationName": "Listing", "variables": {"first": first}}
    ).decode()


async def seed(http: httpx.AsyncClient, url: str, sessions: int, messages: int) -> None:
    limit = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        lines = [
            {("user" if n % 2 == 0 else "assistant"): {"content": f"line {n + 1} of {index}"}}
            for n in range(messages)
        ]
        async with limit:
            await gql(http, url, CREATE, input={"name": f"session {index}", "messages": lines})

    await asyncio.gather(*(one(i) for i in range(sessions)))


async def count_commands(
    b: Bench, sizes: list[int], requests: int, cache_seconds: float, seed_sessions: int
) -> list[dict[str, Any]]:
    """Commands per listing request for each page size, with the app in this process."""
    from sessiongraph.app import create_app
    from sessiongraph.settings import Settings

    settings = Settings(
        mongodb_uri=b.uri,
        db_name=b.db_name,
        rate_limit_per_second=0,
        auth_cache_seconds=cache_seconds,
        events_mode="local",
        log_level="WARNING",
    )
    rows = []
    async with serve_in_process(create_app(settings)) as base, b.client() as http:
        url = f"{base}/graphql"
        if seed_sessions:
            await seed(http, url, seed_sessions, messages=8)
        for size in sizes:
            await gql(http, url, LISTING, first=size)  # warm-up: the key cache, the pool
            COUNTER.start(b.db_name)
            for _ in range(requests):
                data = await gql(http, url, LISTING, first=size)
            commands = COUNTER.stop()
            nodes = data["sessions"]["nodes"]
            assert len(nodes) == size, f"asked for {size} sessions, got {len(nodes)}"
            assert all(len(n["messages"]["nodes"]) == 5 for n in nodes), "expected 5 messages"
            rows.append(
                {
                    "page_size": size,
                    "requests": requests,
                    "commands_per_request": sum(commands.values()) / requests,
                    "by_command": {k: v / requests for k, v in sorted(commands.items())},
                }
            )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,5,20,50,100", help="page sizes to count")
    parser.add_argument("--count-requests", type=int, default=5, help="requests per count")
    parser.add_argument("--throughput-sizes", default="1,20,100", help="page sizes for req/s")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument(
        "--connections", type=int, default=8, help="wrk connections (8: a page of 100 is slow)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs; medians reported (3)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    throughput_sizes = [int(s) for s in args.throughput_sizes.split(",") if s]
    if throughput_sizes:
        wrk_command()
    seeded = max([*sizes, *throughput_sizes])

    async with bench() as b:
        cached = await count_commands(b, sizes, args.count_requests, 5.0, seeded)
        uncached = await count_commands(b, sizes, args.count_requests, 0.0, 0)
        count_rows = [
            [
                on["page_size"],
                f"{on['commands_per_request']:g}",
                f"{off['commands_per_request']:g}",
                ", ".join(f"{k} {v:g}" for k, v in off["by_command"].items()),
            ]
            for on, off in zip(cached, uncached, strict=True)
        ]
        print_table(
            "database commands per listing request (sessions with their last 5 messages)",
            ["page size", "key cached", "key looked up", "commands (key looked up)"],
            count_rows,
        )

        throughput: list[dict[str, Any]] = []
        memory_mib = None
        if throughput_sizes:
            async with b.server(**NO_RATE_LIMIT) as server:
                for size in throughput_sizes:  # warm-up, and a check the answer is whole
                    data = await wrk(server.url, [_body(size)],
                                     {"Authorization": f"Bearer {b.key}"},
                                     duration=2, connections=args.connections)  # fmt: skip
                    assert data["errors"] == 0, data
                    async with b.client() as http:
                        response = await http.post(
                            server.url,
                            content=_body(size),
                            headers={"Content-Type": "application/json"},
                        )
                        assert len(check_data(response.json())["sessions"]["nodes"]) == size
                runs: dict[int, list[dict[str, Any]]] = {size: [] for size in throughput_sizes}
                idle_pids = [server.pid, *([b.db_pid] if b.db_pid else [])]
                for run in range(args.runs):
                    for size in throughput_sizes:
                        # A page of 100 takes seconds: let the requests wrk left in flight
                        # finish before the next run starts.
                        await wait_idle(idle_pids)
                        result = await load(
                            b,
                            server,
                            [_body(size)],
                            duration=args.duration,
                            connections=args.connections,
                            threads=args.threads,
                            request_timeout=60,
                        )
                        runs[size].append(result)
                        print(
                            f"run {run + 1}/{args.runs} first: {size:<3} "
                            f"{result['requests_per_s']:6.0f} req/s  p50 {result['p50_ms']:6.1f}"
                            f" ms  p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}"
                        )
                memory_mib = server.memory_kib()[1] / 1024
            for size in throughput_sizes:
                throughput.append({"page_size": size, **median_of(runs[size]), "runs": runs[size]})
            print_table(
                f"listing throughput, `sessiongraph serve` (median of {args.runs} runs; wrk "
                f"{args.threads} thread, {args.connections} connections, {args.duration:g} s)",
                ["page size", "req/s", "p50 ms", "p99 ms", "srv CPU ms/req", "db CPU ms/req"],
                [
                    [t["page_size"], t["requests_per_s"], t["p50_ms"], t["p99_ms"],
                     t["server_cpu_ms_per_request"], t.get("db_cpu_ms_per_request", "-")]
                    for t in throughput
                ],
            )  # fmt: skip

    counts_cached = {row["commands_per_request"] for row in cached}
    counts_uncached = {row["commands_per_request"] for row in uncached}
    bar = len(counts_uncached) == 1 and max(counts_uncached) <= 3
    bar_cached = len(counts_cached) == 1 and max(counts_cached) <= 3
    print(
        f"\nbar (constant and <= 3 whatever the page size): key looked up "
        f"{'met' if bar else 'NOT met'} ({sorted(counts_uncached)}), key cached "
        f"{'met' if bar_cached else 'NOT met'} ({sorted(counts_cached)})"
        + (f"; server peak RSS {memory_mib:.1f} MiB" if memory_mib else "")
    )
    path = write_result(
        "list",
        {
            "settings": {
                "document": LISTING.strip(),
                "seeded_sessions": seeded,
                "messages_per_session": 8,
                "count_requests_per_size": args.count_requests,
                "runs": args.runs,
                "duration_s": args.duration,
                "connections": args.connections,
                "wrk_threads": args.threads,
                "rate_limit_per_second": 0,
                "load_generator": "wrk",
            },
            "commands_key_cached": cached,
            "commands_key_looked_up": uncached,
            "bar_constant_le_3_met": {"key_looked_up": bar, "key_cached": bar_cached},
            "throughput": throughput,
            "throughput_median_requests_per_s": {
                t["page_size"]: t["requests_per_s"] for t in throughput
            },
            "server_peak_rss_mib": memory_mib,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    asyncio.run(main())
