"""Reads at real sizes: every README and console read, timed through the server over HTTP on a
database seeded with many sessions and messages spread over several organizations.

On a shared machine wall times swing with the load; the CPU time the server and the database
spend per request is what one request costs on an idle machine, and is the column to compare.

The script seeds a fresh database (a SecantusDB started in memory, as the tests start it, or
MONGODB_URI) with bulk inserts in the stored format (storage.documents), then runs
`sessiongraph serve` as its own process (rate limiting off) and times each read, one request at
a time: the median and p90 of --repeat requests after a warm-up. Every read is made by the
organization of the benchmark's key, one of --orgs organizations of equal size.

    python -m bench.scale                                   # 10,000 sessions, 100,000 messages
    python -m bench.scale --sessions 4500 --messages 0      # one row of the issue's table
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.harness import (
    Bench,
    bench,
    check_data,
    cpu_seconds,
    percentile,
    print_table,
    write_result,
)
from storage.database import Database
from storage.message_windows import windows_after

BATCH = 5000
CUSTOMERS = [f"+1415555{n:04d}" for n in range(200)]

README_QUICKSTART = "{ sessions(first: 5) { totalCount nodes { id name status } } }"
NAMES_20 = "{ sessions(first: 20) { nodes { id name } } }"
LISTING_20_LAST_5 = """{ sessions(first: 20) { nodes { id name status messageCount updatedAt
  messages(last: 5) { nodes { seq role content } } } } }"""
NEXT_PAGE = """query Next($after: String!) { sessions(first: 20, after: $after) {
  nodes { id name } pageInfo { hasNextPage endCursor } } }"""
CREATE_SESSION = """mutation Create($name: String!) { createSession(input: {name: $name,
  messages: [{user: {content: "hello"}}, {user: {content: "again"}}]}) { id } }"""
DELETE_SESSION = "mutation Delete($id: ID!) { deleteSession(id: $id) { id } }"
UPDATE_SESSION = """mutation Rename($id: ID!, $name: String!) {
  updateSession(id: $id, input: {name: $name}) { id } }"""
CONSOLE_SESSIONS = """query ConsoleSessions($first: Int!) {
  sessions(first: $first, orderBy: {field: UPDATED_AT, direction: DESC}) {
    totalCount
    nodes { id name status messageCount updatedAt }
  }
}"""
CONSOLE_TRANSCRIPT = """query ConsoleTranscript($id: ID!, $last: Int!) {
  session(id: $id) {
    id name status messageCount updatedAt
    messages(last: $last) {
      nodes { seq role content createdAt }
      pageInfo { hasPreviousPage }
    }
  }
}"""
README_SESSION = """query ReadOne($id: ID!) {
  session(id: $id) {
    name status messageCount
    customer { number name }
    assistant { name model { provider name } config }
    messages(last: 5) {
      nodes { seq role content createdAt }
      pageInfo { hasPreviousPage startCursor }
    }
  }
}"""
README_FILTERED = """query Filtered($number: String!, $since: DateTime!) {
  sessions(
    first: 10
    filter: {status: ACTIVE, customerNumberAny: [$number], createdAt: {gte: $since}}
    orderBy: {field: UPDATED_AT, direction: DESC}
  ) {
    totalCount
    edges { cursor node { id name updatedAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""
ACTIVE_COUNT = "{ sessions(first: 20, filter: {status: ACTIVE}) { totalCount nodes { id } } }"
COMPLETED_COUNT = "{ sessions(first: 20, filter: {status: COMPLETED}) { totalCount nodes { id } } }"


def session_document(org_id: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    """A session as storage.SessionStore.create stores it, created at `at`."""
    active = rng.random() < 0.3
    updated = at + timedelta(seconds=rng.randrange(0, 3600))
    return {
        "_id": str(uuid.uuid4()),
        "org_id": org_id,
        "name": f"Call {rng.randrange(100_000)}",
        "status": "active" if active and rng.random() < 0.7 else "completed",
        "expiration_seconds": 3600 * 24 * 60 if active else 3600,
        "assistant_id": None,
        "assistant": {"name": "Ava", "model": {"provider": "openai", "model": "gpt-4o"}},
        "customer": {"number": rng.choice(CUSTOMERS), "name": "Alice"},
        "phone_number_id": None,
        "phone_number": None,
        "expires_at": at + timedelta(days=60 if active else 0, hours=1),
        "created_at": at,
        "updated_at": updated,
        "message_count": 0,
    }


def message_document(session: dict[str, Any], seq: int) -> dict[str, Any]:
    """A message as storage.documents.message_documents stores it."""
    return {
        "_id": str(uuid.uuid4()),
        "session_id": session["_id"],
        "org_id": session["org_id"],
        "seq": seq,
        "role": "user" if seq % 2 else "assistant",
        "content": f"Message {seq} of the conversation, a sentence of ordinary length.",
        "created_at": session["created_at"] + timedelta(seconds=seq),
    }


async def seed(
    db: Database, orgs: list[str], sessions: int, messages: int, seed: int, windows: bool = True
) -> None:
    """Bulk-insert `sessions` sessions, evenly over `orgs`, and `messages` messages over them
    (a random session each, so transcripts vary in length), in the stored format: with the
    sessions' message windows, or without them (as stored before them) unless `windows`."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    docs = [
        session_document(
            orgs[n % len(orgs)], now - timedelta(seconds=rng.randrange(30 * 86400)), rng
        )
        for n in range(sessions)
    ]
    counts = [0] * len(docs)
    for _ in range(messages if docs else 0):
        counts[rng.randrange(len(docs))] += 1
    transcripts = []
    for doc, count in zip(docs, counts, strict=True):
        doc["message_count"] = count
        transcript = [message_document(doc, seq) for seq in range(1, count + 1)]
        if windows:
            doc.update(windows_after({}, 0, transcript))
        transcripts.append(transcript)
    for start in range(0, len(docs), BATCH):
        await db.sessions.insert_many(docs[start : start + BATCH], ordered=False)
    batch: list[dict[str, Any]] = []
    for transcript in transcripts:
        batch.extend(transcript)
        if len(batch) >= BATCH:
            await db.messages.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await db.messages.insert_many(batch, ordered=False)


async def timed(
    http: httpx.AsyncClient,
    url: str,
    query: str,
    variables: dict[str, Any],
    repeat: int,
    pids: tuple[int, int | None],
) -> dict[str, Any]:
    """The median and p90 wall time of `repeat` requests after one warm-up, and the CPU time
    per request of the server and of the database (when this run started it)."""
    warm_up = (await http.post(url, json={"query": query, "variables": variables})).json()
    if warm_up.get("errors"):
        # Too slow to serve at all (the request timeout): the first error's code says so.
        return {"error": warm_up["errors"][0].get("extensions", {}).get("code", "ERROR")}
    server_pid, db_pid = pids
    server_cpu = cpu_seconds(server_pid)
    db_cpu = cpu_seconds(db_pid) if db_pid is not None else 0.0
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await http.post(url, json={"query": query, "variables": variables})
        times.append((time.perf_counter() - started) * 1000)
        check_data(response.json())
    server_ms = (cpu_seconds(server_pid) - server_cpu) * 1000 / repeat
    db_ms = (cpu_seconds(db_pid) - db_cpu) * 1000 / repeat if db_pid is not None else 0.0
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(percentile(times, 90), 1),
        "server_cpu_ms": round(server_ms, 1),
        "db_cpu_ms": round(db_ms, 1),
        "cpu_ms": round(server_ms + db_ms, 1),
    }


async def timed_writes(
    http: httpx.AsyncClient, url: str, repeat: int, pids: tuple[int, int | None]
) -> list[dict[str, Any]]:
    """`createSession` (two messages) `repeat` times, then `updateSession` (a new name) and
    `deleteSession` of each created, each timed as `timed` times a read, after one warm-up of
    each."""
    server_pid, db_pid = pids
    rows = []
    created: list[str] = []
    phases = (
        ("createSession with 2 messages", repeat + 1),
        ("updateSession", 0),
        ("deleteSession", 0),
    )
    for name, count in phases:
        times = []
        server_cpu, db_cpu = 0.0, 0.0
        steps = count or len(created)
        for step in range(steps):
            if step == 1:  # after the warm-up
                server_cpu = cpu_seconds(server_pid)
                db_cpu = cpu_seconds(db_pid) if db_pid is not None else 0.0
            if count:
                body = {"query": CREATE_SESSION, "variables": {"name": f"write {step}"}}
            elif name == "updateSession":
                variables = {"id": created[step], "name": f"renamed {step}"}
                body = {"query": UPDATE_SESSION, "variables": variables}
            else:
                body = {"query": DELETE_SESSION, "variables": {"id": created[step]}}
            started = time.perf_counter()
            data = check_data((await http.post(url, json=body)).json())
            if step:
                times.append((time.perf_counter() - started) * 1000)
            if count:
                created.append(data["createSession"]["id"])
        server_ms = (cpu_seconds(server_pid) - server_cpu) * 1000 / len(times)
        db_ms = (cpu_seconds(db_pid) - db_cpu) * 1000 / len(times) if db_pid is not None else 0.0
        rows.append(
            {
                "read": name,
                "median_ms": round(statistics.median(times), 1),
                "p90_ms": round(percentile(times, 90), 1),
                "server_cpu_ms": round(server_ms, 1),
                "db_cpu_ms": round(db_ms, 1),
                "cpu_ms": round(server_ms + db_ms, 1),
            }
        )
    return rows


async def measure(b: Bench, args: argparse.Namespace) -> list[dict[str, Any]]:
    async with b.server(SESSIONGRAPH_RATE_LIMIT_PER_SECOND="0") as server, b.client() as http:
        url = server.url
        page = check_data((await http.post(url, json={"query": NAMES_20, "variables": {}})).json())
        ids = [node["id"] for node in page["sessions"]["nodes"]]
        cursor_page = check_data(
            (
                await http.post(
                    url,
                    json={"query": "{ sessions(first: 20) { pageInfo { endCursor } } }"},
                )
            ).json()
        )
        after = cursor_page["sessions"]["pageInfo"]["endCursor"]
        since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        reads: list[tuple[str, str, dict[str, Any]]] = [
            ("README: sessions(first: 5) with totalCount", README_QUICKSTART, {}),
            ("sessions(first: 20) { nodes { id name } }", NAMES_20, {}),
            ("20 sessions with messages(last: 5)", LISTING_20_LAST_5, {}),
            ("next page: sessions(first: 20, after)", NEXT_PAGE, {"after": after}),
            ("console: 100 sessions by updatedAt, totalCount", CONSOLE_SESSIONS, {"first": 100}),
            (
                "console: transcript, messages(last: 500)",
                CONSOLE_TRANSCRIPT,
                {"id": ids[0], "last": 500},
            ),
            ("README: one session, messages(last: 5)", README_SESSION, {"id": ids[1]}),
            (
                "README: filtered list (ACTIVE, customer, createdAt)",
                README_FILTERED,
                {"number": CUSTOMERS[0], "since": since},
            ),
            ("status ACTIVE with totalCount", ACTIVE_COUNT, {}),
            ("status COMPLETED with totalCount", COMPLETED_COUNT, {}),
        ]
        rows = []
        for name, query, variables in reads:
            pids = (server.pid, b.db_pid)
            rows.append(
                {"read": name, **await timed(http, url, query, variables, args.repeat, pids)}
            )
        if args.writes:
            rows += await timed_writes(http, url, args.repeat, (server.pid, b.db_pid))
        return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=5, help="organizations of equal size")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per read")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--writes",
        action="store_true",
        help="also time createSession and deleteSession (each session created is deleted)",
    )
    parser.add_argument(
        "--without-windows",
        action="store_true",
        help="store sessions without message windows, as before them (storage/message_windows.py)",
    )
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()
    async with bench() as b:
        db = await Database.connect(b.uri, b.db_name)
        try:
            started = time.perf_counter()
            orgs = ["bench"] + [f"other-{n}" for n in range(1, args.orgs)]
            await seed(db, orgs, args.sessions, args.messages, args.seed, not args.without_windows)
            seconds = time.perf_counter() - started
        finally:
            await db.close()
        print(f"seeded {args.sessions} sessions, {args.messages} messages in {seconds:.1f} s")
        rows = await measure(b, args)
    title = (
        f"{args.sessions} sessions, {args.messages} messages, {args.orgs} organizations "
        f"(wall median and p90 of {args.repeat} requests; CPU per request of server + database)"
    )
    headers = ["read", "median ms", "p90 ms", "server CPU ms", "db CPU ms", "CPU ms"]
    keys = ["read", "median_ms", "p90_ms", "server_cpu_ms", "db_cpu_ms", "cpu_ms"]
    print_table(title, headers, [[row.get(key, row.get("error")) for key in keys] for row in rows])
    name = f"scale-{args.label}" if args.label else "scale"
    write_result(name, {"settings": vars(args), "reads": rows})


if __name__ == "__main__":
    asyncio.run(main())
