"""Session-scoped access tokens: listing and counting a token's sessions, against the
organization-wide listing, in the storage layer on the same seeded data.

A token limited to particular sessions lists them through `storage.scope.ScopedSessionStore`,
which reads the scope by id and filters, sorts and pages in Python. The alternative it
replaced is the database query with `_id: {$in: scope}` beside the organization and the
other filters (SessionStore.list with the ids narrowed), which SecantusDB answers with a
collection scan. Each is timed (median of --runs repetitions of --requests calls) and
reported as a ratio to the organization-wide first page of 20 (the baseline), all in one run.

    python -m bench.scoped                     # 5,000 sessions, scopes of 10 and 100
    python -m bench.scoped --sessions 20000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from bench.harness import bench, plain_session, print_table, write_result
from storage import Database, SessionQuery, SessionStore
from storage.scope import ScopedSessionStore

ORG = "bench-scoped"
OTHER_ORG = "bench-other"


async def seed(store: SessionStore, sessions: int) -> list[str]:
    """`sessions` sessions, half of them another organization's; the first org's ids."""
    ids: list[str] = []
    for index in range(sessions):
        org_id = ORG if index % 2 == 0 else OTHER_ORG
        record, _ = await store.create(org_id, plain_session(f"s{index % 7}"), [])
        if org_id == ORG:
            ids.append(record["id"])
    return ids


async def timed(call: Callable[[], Awaitable[Any]], requests: int, runs: int) -> float:
    """Median milliseconds per call."""
    await call()
    medians = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(requests):
            await call()
        medians.append((time.perf_counter() - started) * 1000 / requests)
    return statistics.median(medians)


async def main(sessions: int, requests: int, runs: int) -> None:
    async with bench() as setup:
        db = await Database.connect(setup.uri, setup.db_name)
        try:
            store = SessionStore(db)
            ids = await seed(store, sessions)
            query = SessionQuery()
            baseline = await timed(lambda: store.list(ORG, query, first=20), requests, runs)
            rows: list[list[Any]] = [["organization, first 20 (baseline)", baseline, "1"]]
            result: dict[str, Any] = {"sessions": sessions, "baseline_ms": baseline}
            for size in (10, 100):
                scope = frozenset(ids[:: max(len(ids) // size, 1)][:size])
                scoped = ScopedSessionStore(store, scope)
                narrowed = replace(query, ids=tuple(sorted(scope)))
                cases: dict[str, Callable[[], Awaitable[Any]]] = {
                    f"scope {size}: list, in the database ($in)": lambda n=narrowed: store.list(
                        ORG, n, first=20
                    ),
                    f"scope {size}: list, scoped store": lambda s=scoped: s.list(
                        ORG, query, first=20
                    ),
                    f"scope {size}: count, in the database ($in)": lambda n=narrowed: store.count(
                        ORG, n
                    ),
                    f"scope {size}: count, scoped store": lambda s=scoped: s.count(ORG, query),
                }
                for name, call in cases.items():
                    ms = await timed(call, requests, runs)
                    rows.append([name, ms, f"{ms / baseline:.3f}"])
                    result[name] = {"ms": ms, "ratio": ms / baseline}
            print_table(
                f"Scoped listing, {sessions} sessions (two organizations)",
                ["operation", "ms/call", "ratio to baseline"],
                rows,
            )
            print(f"\nwritten to {write_result('scoped', result)}")
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.sessions, options.requests, options.runs))
