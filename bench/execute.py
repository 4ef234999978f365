"""Execution alone: CPU per operation of `Schema.execute`, the database reads already loaded.

Isolates what the levers of issue 12 change (extensions, execution, the objects a result is
built from) from the database, the driver and HTTP, which bench.http and bench.profile
include. It seeds bench.http's data through a server, reads one session and its messages
with the stores, then runs each operation many times in this process with the schema the app
builds (metrics observer included) and a fresh context per run whose DataLoaders are primed
with those records, so no command is sent. Reported: CPU microseconds per operation
(`time.process_time`), median of --repeats rounds of --count operations.

    python -m bench.execute                   # SessionMessages and SessionById
    python -m bench.execute --count 5000 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

from bench.harness import bench, print_table, write_result
from bench.http import DOCUMENTS, NO_RATE_LIMIT, seed
from resolvers.context import Context
from schema import create_schema
from sessiongraph.metrics import Metrics
from storage import Database, MessageStore, SessionStore
from storage.events import EventHub

OPERATIONS = ("SessionMessages", "SessionById")
FIRST_MESSAGES = 10


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="operations per round (2000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; median kept (5)")
    args = parser.parse_args()

    async with bench() as b:
        async with b.server(**NO_RATE_LIMIT) as server:
            (session_id,) = await seed(b, server.url, 1, 20)
        db = await Database.connect(b.uri, b.db_name)
        sessions, messages = SessionStore(db), MessageStore(db)
        org_id = (await db.api_keys.find_one({}))["org_id"]
        record = (await sessions.get_many(org_id, [session_id]))[session_id]
        key = (session_id, 1, FIRST_MESSAGES)
        transcript = (await messages.in_ranges(org_id, [key]))[session_id][:FIRST_MESSAGES]
        await db.close()

    metrics = Metrics()
    schema = create_schema(observe_operation=metrics.observe_operation)
    events = EventHub()

    def context() -> Context:
        ctx = Context(org_id, "bench", sessions, messages, events)
        ctx.loaders.session_by_id.prime(session_id, record)
        ctx.loaders.messages_by_seq_range.prime(key, transcript)
        return ctx

    async def run(op: str) -> dict[str, Any]:
        result = await schema.execute(
            DOCUMENTS[op], {"id": session_id}, context(), operation_name=op
        )
        if result.errors:
            raise SystemExit(f"{op}: {result.errors}")
        assert result.data is not None
        return result.data

    rows = []
    results: dict[str, Any] = {}
    for op in OPERATIONS:
        await run(op)  # warm the parser and validation caches
        rounds = []
        for _ in range(args.repeats):
            gc.collect()
            started = time.process_time()
            for _ in range(args.count):
                await run(op)
            rounds.append((time.process_time() - started) / args.count * 1e6)
        results[op] = {"us_per_operation": statistics.median(rounds), "rounds": rounds}
        rows.append([op, statistics.median(rounds), min(rounds), max(rounds)])
    print_table(
        f"Schema.execute, loaders primed (median of {args.repeats} x {args.count})",
        ["operation", "CPU us/op", "min", "max"],
        rows,
    )
    path = write_result("execute", {"settings": vars(args), "results": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    asyncio.run(main())
