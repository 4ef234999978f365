"""Appends: time per appended message as a transcript grows.

One message at a time (addMessages with one message, over HTTP, sequentially, one keep-alive
connection) to sessions already holding 10, 1,000 and 10,000 messages; the median time per
append at each length, and the ratio 10,000 / 10 (a transcript's length should not slow its
appends). `sessiongraph serve` runs in its own process (rate limiting off:
SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0; events from a change stream, as on a replica set).
Transcripts are seeded through the same API (createSession with 100 messages, then
addMessages in batches of 100, the most one call takes), so they hold exactly the documents
the API writes. Each run uses fresh sessions, seeded before any is measured, and measures the
lengths in a rotating order.

Then a diagnosis, with the app served in this process so PyMongo's command monitoring sees its
commands: the median duration of each database command of an append at 10 and 10,000
messages, and the database's query plans (explain) for the append's commands.

    python -m bench.append                       # 3 runs x 200 appends per length
    python -m bench.append --lengths 10,10000 --appends 50 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from pymongo import monitoring

from bench.harness import (
    Bench,
    CommandCounter,
    Server,
    bench,
    cpu_seconds,
    gql,
    percentile,
    print_table,
    serve_in_process,
    write_result,
)
from resolvers.message_inputs import MESSAGES_MAX
from storage import Database

# Registered before any client exists: global listeners apply to clients created later.
COUNTER = CommandCounter()
monitoring.register(COUNTER)

CREATE = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id messageCount } }
"""
APPEND = """
mutation Append($sessionId: ID!, $messages: [MessageInput!]!) {
  addMessages(sessionId: $sessionId, messages: $messages) { seq }
}
"""
BATCH = MESSAGES_MAX  # the most messages addMessages and createSession take
NO_RATE_LIMIT = {"SESSIONGRAPH_RATE_LIMIT_PER_SECOND": "0"}


def _lines(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            ("user" if n % 2 == 0 else "assistant"): {
                "content": f"Line {n + 1}: a turn of a conversation about an order or a bill."
            }
        }
        for n in range(start, start + count)
    ]


async def seed(http: httpx.AsyncClient, url: str, length: int) -> str:
    """A session holding `length` messages, written through the API."""
    first = min(length, BATCH)
    created = await gql(
        http, url, CREATE, input={"name": f"{length}", "messages": _lines(0, first)}
    )
    session_id: str = created["createSession"]["id"]
    for start in range(first, length, BATCH):
        count = min(BATCH, length - start)
        await gql(http, url, APPEND, sessionId=session_id, messages=_lines(start, count))
    return session_id


async def appends(http: httpx.AsyncClient, url: str, session_id: str, count: int) -> list[float]:
    """Milliseconds taken by each of `count` single-message appends, one after another."""
    times = []
    for n in range(count):
        message = [{"user": {"content": f"appended {n}"}}]
        started = time.perf_counter()
        await gql(http, url, APPEND, sessionId=session_id, messages=message)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def measure(
    b: Bench, server: Server, lengths: list[int], count: int, runs: int
) -> tuple[dict[int, list[dict[str, Any]]], list[dict[int, str]]]:
    results: dict[int, list[dict[str, Any]]] = {length: [] for length in lengths}
    async with b.client() as http:
        started = time.monotonic()
        sessions = [{length: await seed(http, server.url, length) for length in lengths}
                    for _ in range(runs)]  # fmt: skip
        print(f"seeded {runs} x {lengths} in {time.monotonic() - started:.0f} s")
        await appends(http, server.url, sessions[0][lengths[0]], 20)  # warm-up
        for run in range(runs):
            order = lengths[run % len(lengths) :] + lengths[: run % len(lengths)]
            for length in order:
                server_cpu = server.cpu_seconds()
                db_cpu = cpu_seconds(b.db_pid) if b.db_pid else 0.0
                times = await appends(http, server.url, sessions[run][length], count)
                result = {
                    "length": length,
                    "appends": count,
                    "median_ms": statistics.median(times),
                    "p90_ms": percentile(times, 90),
                    "p99_ms": percentile(times, 99),
                    "mean_ms": statistics.fmean(times),
                    "server_cpu_ms_per_append": (server.cpu_seconds() - server_cpu) * 1000 / count,
                }
                if b.db_pid:
                    result["db_cpu_ms_per_append"] = (cpu_seconds(b.db_pid) - db_cpu) * 1000 / count
                results[length].append(result)
                print(
                    f"run {run + 1}/{runs} length {length:>6}: median {result['median_ms']:.1f} ms"
                    f"  p90 {result['p90_ms']:.1f} ms"
                )
    return results, sessions


async def diagnose(b: Bench, sessions: dict[int, str], count: int) -> dict[str, Any]:
    """Per-command durations of appends at each length, and the database's plans."""
    from sessiongraph.app import create_app
    from sessiongraph.settings import Settings

    settings = Settings(
        mongodb_uri=b.uri,
        db_name=b.db_name,
        rate_limit_per_second=0,
        events_mode="local",
        log_level="WARNING",
    )
    by_length: dict[str, Any] = {}
    async with serve_in_process(create_app(settings)) as base, b.client() as http:
        url = f"{base}/graphql"
        await appends(http, url, sessions[min(sessions)], 5)  # warm-up
        for length, session_id in sessions.items():
            COUNTER.start(b.db_name)
            times = await appends(http, url, session_id, count)
            commands = COUNTER.stop()
            by_length[str(length)] = {
                "append_median_ms": statistics.median(times),
                "commands_per_append": {k: v / count for k, v in sorted(commands.items())},
                "command_median_ms": {
                    k: statistics.median(v) for k, v in sorted(COUNTER.durations_ms.items())
                },
            }
    return {"by_length": by_length, "plans": await plans(b, sessions)}


async def plans(b: Bench, sessions: dict[int, str]) -> dict[str, Any]:
    """explain (executionStats) of the reads and writes an append makes, as MessageStore
    issues them."""
    db = await Database.connect(b.uri, b.db_name)
    session_id = sessions[max(sessions)]
    now = datetime.now(UTC)
    appendable = {
        "_id": session_id,
        "org_id": "bench",
        "status": "active",
        "expires_at": {"$gt": now},
    }
    commands = {
        "update sessions {_id, org_id, status, expires_at}": {
            "update": "sessions",
            "updates": [{"q": appendable, "u": {"$set": {"updated_at": now}}}],
        },
        "find sessions {_id}": {"find": "sessions", "filter": {"_id": session_id}},
        "find messages {session_id, seq} (unique-index probe)": {
            "find": "messages",
            "filter": {"session_id": session_id, "seq": 10**6},
        },
        "update sessions {_id} (without org_id, status, expires_at)": {
            "update": "sessions",
            "updates": [{"q": {"_id": session_id}, "u": {"$set": {"updated_at": now}}}],
        },
    }
    result: dict[str, Any] = {}
    try:
        for name, command in commands.items():
            try:
                explained = await db.db.command({"explain": command, "verbosity": "executionStats"})
            except Exception as error:  # a database may not explain every command
                result[name] = {"error": str(error)}
                continue
            stats = explained.get("executionStats", {})
            result[name] = {
                "plan": _stages(explained.get("queryPlanner", {}).get("winningPlan", {})),
                "keys_examined": stats.get("totalKeysExamined"),
                "docs_examined": stats.get("totalDocsExamined"),
            }
        result["collection_sizes"] = {
            "sessions": await db.sessions.count_documents({}),
            "messages": await db.messages.count_documents({}),
        }
    finally:
        await db.close()
    return result


def _stages(plan: dict[str, Any]) -> str:
    if not plan:
        return "?"
    name = str(plan.get("stage", "?"))
    if plan.get("indexName"):
        name += f"({plan['indexName']})"
    children = [plan["inputStage"]] if "inputStage" in plan else plan.get("inputStages", [])
    return " > ".join([name, *(_stages(child) for child in children)])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", default="10,1000,10000", help="transcript lengths")
    parser.add_argument("--appends", type=int, default=200, help="appends per length and run")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument("--diagnose-appends", type=int, default=50, help="0 skips the diagnosis")
    args = parser.parse_args()
    lengths = sorted(int(n) for n in args.lengths.split(","))

    async with bench() as b:
        async with b.server(**NO_RATE_LIMIT) as server:
            results, sessions = await measure(b, server, lengths, args.appends, args.runs)
            memory_mib = server.memory_kib()[1] / 1024
        diagnosis = (
            await diagnose(b, sessions[0], args.diagnose_appends) if args.diagnose_appends else {}
        )

    summary = []
    for length in lengths:
        runs = results[length]
        summary.append(
            {
                "length": length,
                "median_ms": statistics.median(r["median_ms"] for r in runs),
                "p90_ms": statistics.median(r["p90_ms"] for r in runs),
                "server_cpu_ms_per_append": statistics.median(
                    r["server_cpu_ms_per_append"] for r in runs
                ),
                "db_cpu_ms_per_append": statistics.median(
                    r.get("db_cpu_ms_per_append", 0.0) for r in runs
                ),
                "runs": runs,
            }
        )
    shortest, longest = summary[0], summary[-1]
    ratio = longest["median_ms"] / shortest["median_ms"]
    per_run = [
        results[longest["length"]][i]["median_ms"] / results[shortest["length"]][i]["median_ms"]
        for i in range(args.runs)
    ]
    print_table(
        f"time per appended message (median of {args.runs} runs x {args.appends} appends)",
        ["messages before", "ms/append", "p90 ms", "srv CPU ms", "db CPU ms"],
        [
            [s["length"], s["median_ms"], s["p90_ms"], s["server_cpu_ms_per_append"],
             s["db_cpu_ms_per_append"]]
            for s in summary
        ],
    )  # fmt: skip
    bar = ratio <= 1.2
    print(
        f"\nratio {longest['length']:,} / {shortest['length']:,}: {ratio:.2f} "
        f"(per run {', '.join(f'{r:.2f}' for r in per_run)}; bar <= 1.2: "
        f"{'met' if bar else 'NOT met'}); server peak RSS {memory_mib:.1f} MiB"
    )
    if diagnosis:
        rows = []
        for length, found in diagnosis["by_length"].items():
            for command, ms in found["command_median_ms"].items():
                rows.append([length, command, found["commands_per_append"][command], ms])
        print_table(
            "diagnosis: database commands of one append (in-process app, median ms)",
            ["length", "command", "per append", "median ms"],
            rows,
        )
        for name, plan in diagnosis["plans"].items():
            print(f"  {name}: {plan}")
    path = write_result(
        "append",
        {
            "settings": {
                "lengths": lengths,
                "appends_per_length": args.appends,
                "runs": args.runs,
                "seeding": "createSession with 100 messages, then addMessages x 100",
                "rate_limit_per_second": 0,
                "events_mode": "auto (change stream)",
                "client": "httpx, sequential, one keep-alive connection",
            },
            "results": summary,
            "ratio_longest_to_shortest": ratio,
            "ratio_per_run": per_run,
            "bar_ratio_le_1_2_met": bar,
            "server_peak_rss_mib": memory_mib,
            "diagnosis": diagnosis,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    asyncio.run(main())
