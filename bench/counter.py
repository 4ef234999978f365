"""What the per-organization session counter (storage/session_counts.py) costs and saves,
measured in one run at the storage layer, the two variants interleaved round by round.

- An organization's total: `SessionCounter.total` (one counter read) against
  `count_by_query` (the database counts the organization's sessions), on a database seeded
  as `bench.scale` seeds it (10,000 sessions, 100,000 messages, 5 organizations).
- Its counts by status (`SessionStore.count` with `status` alone): the counter and the
  expired-but-unswept range in one transaction, against the count by query (a store on a
  connection without transactions, which keeps no counter).
- A create (2 messages) and a delete: `SessionStore.create`/`delete` as they are, against
  the same with `SessionCounter.add` replaced by a no-op for the round (what they did before
  the counter, one write fewer in the transaction).
- A status change (`SessionStore.update` of `status` to completed and back: two updates): as
  it is, against the same with counters not kept for the round (no read of the old status,
  no counter write).

Per operation: wall median, and the CPU of this process (the client side of the driver plus
the store) and of the database (when the run started it).

    python -m bench.counter
    python -m bench.counter --sessions 2000 --messages 0
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

from bench.harness import bench, cpu_seconds, plain_session, print_table, write_result
from bench.scale import seed
from storage import SessionQuery, SessionStore
from storage.database import Database
from storage.records import NewMessage, SessionStatusValue
from storage.session_counts import SessionCounter, count_by_query

ORG = "bench"
NEW = plain_session("counter bench")
MESSAGES: list[NewMessage] = [
    {"role": "user", "fields": {"content": "hello"}},
    {"role": "user", "fields": {"content": "again"}},
]
Operation = Callable[[int], Awaitable[Any]]
STATUSES: tuple[SessionStatusValue, ...] = ("completed", "active")
Patch = Callable[[], Any] | None
"""What a variant's rounds run under: None, or a patch that removes the counter's work."""


async def noop_add(
    self: SessionCounter, org_id: str, delta: int, session: Any, *, completed: int = 0
) -> None:
    """`SessionCounter.add` for the rounds without the counter."""


def without_counter() -> Any:
    """For a round: `SessionCounter.add` does nothing (creates and deletes as before it)."""
    return mock.patch.object(SessionCounter, "add", noop_add)


def counters_not_kept() -> Any:
    """For a round: no counter is kept (a status change as before the completed counts)."""
    return mock.patch.object(SessionCounter, "kept", property(lambda self: False))


class Timings:
    """Wall times and CPU seconds of one variant, summed over its rounds."""

    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self.own_cpu = 0.0
        self.db_cpu = 0.0

    def row(self, name: str) -> dict[str, Any]:
        n = len(self.wall_ms)
        return {
            "operation": name,
            "n": n,
            "median_ms": round(statistics.median(self.wall_ms), 2),
            "client_cpu_ms": round(self.own_cpu * 1000 / n, 2),
            "db_cpu_ms": round(self.db_cpu * 1000 / n, 2),
        }


async def run_round(
    operation: Operation, times: Timings, per_round: int, db_pid: int | None
) -> None:
    own, dbc = time.process_time(), cpu_seconds(db_pid) if db_pid else 0.0
    for step in range(per_round):
        started = time.perf_counter()
        await operation(step)
        times.wall_ms.append((time.perf_counter() - started) * 1000)
    times.own_cpu += time.process_time() - own
    times.db_cpu += (cpu_seconds(db_pid) if db_pid else 0.0) - dbc


async def compare(
    name: str,
    variants: tuple[tuple[str, Operation, Patch], tuple[str, Operation, Patch]],
    rounds: int,
    per_round: int,
    db_pid: int | None,
) -> list[dict[str, Any]]:
    """Alternate the two variants' rounds (which goes first alternating too); their rows and
    the ratio of the first to the second."""
    timings = {label: Timings() for label, _, _ in variants}
    for index in range(rounds):
        order = variants if index % 2 == 0 else variants[::-1]
        for label, operation, patch in order:
            if patch is not None:
                with patch():
                    await run_round(operation, timings[label], per_round, db_pid)
            else:
                await run_round(operation, timings[label], per_round, db_pid)
    rows = [timings[label].row(f"{name}: {label}") for label, _, _ in variants]
    first, second = rows
    ratio: dict[str, Any] = {"operation": f"{name}: ratio", "n": ""}
    for key in ("median_ms", "client_cpu_ms", "db_cpu_ms"):
        ratio[key] = round(first[key] / second[key], 2) if second[key] else None
    return [*rows, ratio]


async def measure(
    db: Database, args: argparse.Namespace, db_pid: int | None
) -> list[dict[str, Any]]:
    store = SessionStore(db)
    counter = SessionCounter(db)
    await counter.total(ORG)  # the first count, not timed
    rows = await compare(
        f"total of {ORG} ({args.sessions // args.orgs} sessions)",
        (
            ("counter", lambda _: counter.total(ORG), None),
            ("count by query", lambda _: count_by_query(db, ORG, None), None),
        ),
        args.rounds,
        args.per_round,
        db_pid,
    )
    by_query = SessionStore(Database(db.client, db.db.name, supports_transactions=False))
    for status in ("completed", "active"):
        query = SessionQuery(status=status)
        await store.count(ORG, query)  # the first count of the completed part, not timed
        rows += await compare(
            f"{status} of {ORG}",
            (
                ("counter", lambda _, q=query: store.count(ORG, q), None),
                ("count by query", lambda _, q=query: by_query.count(ORG, q), None),
            ),
            args.rounds,
            args.per_round,
            db_pid,
        )
        assert await store.count(ORG, query) == await by_query.count(ORG, query)
    created: dict[str, list[str]] = {"counter": [], "no counter": []}

    def create(label: str) -> Operation:
        async def run(_: int) -> None:
            session, _messages = await store.create(ORG, NEW, MESSAGES)
            created[label].append(session["id"])

        return run

    def delete(label: str) -> Operation:
        async def run(_: int) -> None:
            await store.delete(ORG, created[label].pop())

        return run

    for name, make in (("create, 2 messages", create), ("delete", delete)):
        rows += await compare(
            name,
            (
                ("counter", make("counter"), None),
                ("no counter", make("no counter"), without_counter),
            ),
            args.rounds,
            args.per_round,
            db_pid,
        )
    target, _ = await store.create(ORG, NEW, [])

    async def there_and_back(_: int) -> None:
        # Both ways in one operation, so a round without counters leaves them exact.
        for status in STATUSES:
            await store.update(ORG, target["id"], {"status": status})

    rows += await compare(
        "update status, completed and back",
        (("counter", there_and_back, None), ("no counter", there_and_back, counters_not_kept)),
        args.rounds,
        args.per_round,
        db_pid,
    )
    for status in ("completed", "active"):
        query = SessionQuery(status=status)
        assert await store.count(ORG, query) == await by_query.count(ORG, query), "drifted"
    truth = await count_by_query(db, ORG, None)
    assert await counter.total(ORG) == truth, "the counter drifted during the run"
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=5, help="organizations of equal size")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per variant")
    parser.add_argument("--per-round", type=int, default=10, help="operations per round")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()
    async with bench() as b:
        db = await Database.connect(b.uri, b.db_name)
        try:
            orgs = [ORG] + [f"other-{n}" for n in range(1, args.orgs)]
            await seed(db, orgs, args.sessions, args.messages, args.seed)
            rows = await measure(db, args, b.db_pid)
        finally:
            await db.close()
        # Reported before the database is dropped, which may take a while.
        title = (
            f"{args.sessions} sessions, {args.messages} messages, {args.orgs} organizations; "
            f"{args.rounds} interleaved rounds of {args.per_round} per variant"
        )
        headers = ["operation", "n", "median ms", "client CPU ms", "db CPU ms"]
        keys = ["operation", "n", "median_ms", "client_cpu_ms", "db_cpu_ms"]
        print_table(title, headers, [[row[key] for key in keys] for row in rows])
        name = f"counter-{args.label}" if args.label else "counter"
        write_result(name, {"settings": vars(args), "operations": rows})


if __name__ == "__main__":
    asyncio.run(main())
