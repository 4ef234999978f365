"""The baseline of bench.http: the same answers with nothing but Starlette, PyMongo and orjson.

One endpoint, POST /graphql, answers the operations bench.http sends, by operationName,
with exactly the JSON the GraphQL server returns for them (bench.http checks that before it
measures), doing the same database work the storage layer does:

- the API key: its SHA-256 looked up in `api_keys` (`{key_hash, revoked_at: None}`,
  projection `{org_id: 1}`), remembered for SESSIONGRAPH_AUTH_CACHE_SECONDS (5, as the server
  does by default);
- SessionById and SessionMessages: `sessions.find({_id: {$in: [id]}, org_id},
  {phone_number_secrets: 0, message_windows: 0})`, as `SessionStore.get_many` issues it for
  the request's session DataLoader (which asks for the message windows too where messages
  are selected: the baseline is the plain two reads, the server's path for sessions without
  windows, storage/message_windows.py), then its first 10 messages with
  `messages.find({session_id, seq: {$gte, $lte}})` sorted by (session_id, seq), batch size
  expected + 1, the organization checked on each message, as `MessageStore.in_ranges`
  issues it;
- SessionList: the newest `first` sessions as `SessionStore.list` reads them for the
  server's planner (`buildInfo`, as `Database.connect` learns it): on MongoDB ("full")
  `sessions.find({$and: [{org_id}]}, {phone_number_secrets: 0, message_windows: 0})` sorted
  by (created_at, _id) descending with limit first + 1; on SecantusDB ("simple")
  `find({org_id, created_at: <window>})` with the same sort, in time windows growing back
  from now until the page is full (`SessionStore._scan`);
- SessionListing: that page, then its sessions' last 5 messages as the messages DataLoader
  batches them into `MessageStore.in_ranges`: on MongoDB one `messages.find({$or: [{session_id,
  seq: {$gte, $lte}}, ...]})`; on SecantusDB one find per session, 8 at a time.

tests/test_bench_baseline.py checks that these are exactly the commands the server sends.

bench/yoga/server.js is the same in Node: GraphQL Yoga over the official driver.

It runs in its own process under uvicorn with the settings `sessiongraph serve` uses: one
worker, uvicorn's default ("auto") event loop and HTTP implementation (uvloop and httptools
when installed), log level warning.

    python -m bench.baseline --port 8001     # MONGODB_URI and SESSIONGRAPH_DB_NAME from env
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uvicorn
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from storage.clock import utc_now
from storage.database import Planner, planner_of
from storage.documents import SESSION_FIELDS
from storage.messages import PARALLEL_RANGES
from storage.session_filters import descending_key_bounds
from storage.sessions import FIRST_WINDOW, LAST_WINDOW, WINDOWS_MAX, next_span

PUBLIC_FIELDS = SESSION_FIELDS
"""The plain session read: no secrets, no message windows (the baseline reads messages)."""
KEY_PREFIX = "sg_"
FIRST_MESSAGES = 10

SESSION_BY_ID = """
query SessionById($id: ID!) {
  session(id: $id) {
    id name status messageCount createdAt updatedAt
    messages(first: 10) { nodes { id seq role content createdAt } }
  }
}
"""
SESSION_LIST = """
query SessionList($first: Int!) {
  sessions(first: $first) { nodes { id name status messageCount createdAt updatedAt } }
}
"""
SESSION_MESSAGES = """
query SessionMessages($id: ID!) {
  session(id: $id) { id name status messages(first: 10) { nodes { seq content } } }
}
"""
SESSION_LISTING = """
query SessionListing($first: Int!) {
  sessions(first: $first) {
    nodes { id name status messageCount updatedAt messages(last: 5) { nodes { seq role content } } }
  }
}
"""
LAST_MESSAGES = 5
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def iso(value: datetime) -> str:
    """A DateTime as the API serializes it: UTC, milliseconds, Z."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _session_fields(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    active = doc["status"] == "active" and doc["expires_at"] > now
    return {
        "id": doc["_id"],
        "name": doc.get("name"),
        "status": "ACTIVE" if active else "COMPLETED",
        "messageCount": doc["message_count"],
        "createdAt": iso(doc["created_at"]),
        "updatedAt": iso(doc["updated_at"]),
    }


class Reads:
    """The database reads of the benchmark's operations, as the storage layer shapes them for
    the server's planner (`planner_of`, from `buildInfo`): the same commands, one by one."""

    def __init__(self, db: Any, planner: Planner) -> None:
        self.sessions = db["sessions"]
        self.messages = db["messages"]
        self.keys = db["api_keys"]
        self.planner = planner

    async def session_doc(self, org_id: str, session_id: str) -> dict[str, Any] | None:
        found = await self.sessions.find(
            {"_id": {"$in": [session_id]}, "org_id": org_id}, PUBLIC_FIELDS
        ).to_list(None)
        return found[0] if found else None

    async def in_ranges(
        self, org_id: str, ranges: list[tuple[str, int, int]]
    ) -> dict[str, list[dict[str, Any]]]:
        """`MessageStore.in_ranges`: one `$or` on a "full" planner, a command per range (8
        at a time) on a "simple" one, which scans the collection for an `$or`."""
        wanted = [(sid, lo, hi) for sid, lo, hi in ranges if lo <= hi]
        if not wanted:
            return {}
        if self.planner == "simple" and len(wanted) > 1:
            turns = asyncio.Semaphore(PARALLEL_RANGES)

            async def one_range(one: tuple[str, int, int]) -> list[dict[str, Any]]:
                async with turns:
                    return await self._in_ranges([one])

            pages = await asyncio.gather(*(one_range(one) for one in wanted))
            docs = [doc for page in pages for doc in page]
        else:
            docs = await self._in_ranges(wanted)
        found: dict[str, list[dict[str, Any]]] = {}
        for m in docs:
            if m["org_id"] == org_id:
                found.setdefault(m["session_id"], []).append(m)
        return found

    async def _in_ranges(self, wanted: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
        clauses = [{"session_id": sid, "seq": {"$gte": lo, "$lte": hi}} for sid, lo, hi in wanted]
        cursor = (
            self.messages.find(clauses[0] if len(clauses) == 1 else {"$or": clauses})
            .sort([("session_id", ASCENDING), ("seq", ASCENDING)])
            .batch_size(sum(hi - lo + 1 for _, lo, hi in wanted) + 1)
        )
        docs: list[dict[str, Any]] = await cursor.to_list(None)
        return docs

    async def session_docs(self, org_id: str, first: int, now: datetime) -> list[dict[str, Any]]:
        """The newest `first` sessions: `SessionStore.list` unfiltered, as one `$and` query
        on a "full" planner, in growing time windows back from `now` on a "simple" one."""
        if self.planner == "simple":
            return (await self._scan(org_id, first + 1, now))[:first]
        cursor = (
            self.sessions.find({"$and": [{"org_id": org_id}]}, PUBLIC_FIELDS)
            .sort(NEWEST_FIRST)
            .limit(first + 1)
        )
        docs: list[dict[str, Any]] = (await cursor.to_list(None))[:first]
        return docs

    async def _scan(self, org_id: str, wanted: int, now: datetime) -> list[dict[str, Any]]:
        """`SessionStore._scan` from the start of an unfiltered page, newest first."""

        async def page(created_at: dict[str, datetime], n: int) -> list[dict[str, Any]]:
            match = {"org_id": org_id, "created_at": created_at}
            docs: list[dict[str, Any]] = await (
                self.sessions.find(match, PUBLIC_FIELDS).sort(NEWEST_FIRST).limit(n).to_list(None)
            )
            return docs

        found: list[dict[str, Any]] = []
        edge: datetime | None = None
        span = FIRST_WINDOW
        windows = 0
        measured, measured_found = timedelta(0), 0
        while len(found) < wanted:
            if span > LAST_WINDOW or windows == WINDOWS_MAX:
                bound = {} if edge is None else descending_key_bounds({"$lt": edge})
                return found + await page(bound, wanted - len(found))
            far = (edge or now) - span
            window = {"$gte": far} if edge is None else {"$lt": edge, "$gte": far}
            got = await page(descending_key_bounds(window), wanted - len(found))
            found += got
            windows += 1
            if edge is not None:
                measured, measured_found = measured + span, measured_found + len(got)
            edge = far
            span = next_span(span, len(got), measured, measured_found, wanted - len(found))
        return found

    async def session_by_id(self, org_id: str, session_id: str) -> dict[str, Any] | None:
        doc = await self.session_doc(org_id, session_id)
        if doc is None:
            return None
        hi = min(FIRST_MESSAGES, doc["message_count"])
        messages = (await self.in_ranges(org_id, [(session_id, 1, hi)])).get(session_id, [])
        session = _session_fields(doc, datetime.now(UTC))
        session["messages"] = {
            "nodes": [
                {
                    "id": m["_id"],
                    "seq": m["seq"],
                    "role": m["role"].upper(),
                    "content": m.get("content", m.get("message")),
                    "createdAt": iso(m["created_at"]),
                }
                for m in messages
            ]
        }
        return session

    async def session_messages(self, org_id: str, session_id: str) -> dict[str, Any] | None:
        doc = await self.session_doc(org_id, session_id)
        if doc is None:
            return None
        hi = min(FIRST_MESSAGES, doc["message_count"])
        messages = (await self.in_ranges(org_id, [(session_id, 1, hi)])).get(session_id, [])
        active = doc["status"] == "active" and doc["expires_at"] > datetime.now(UTC)
        return {
            "id": doc["_id"],
            "name": doc.get("name"),
            "status": "ACTIVE" if active else "COMPLETED",
            "messages": {
                "nodes": [
                    {"seq": m["seq"], "content": m.get("content", m.get("message"))}
                    for m in messages
                ]
            },
        }

    async def session_list(self, org_id: str, first: int) -> dict[str, Any]:
        now = utc_now()
        docs = await self.session_docs(org_id, first, now)
        return {"nodes": [_session_fields(doc, now) for doc in docs]}

    async def session_listing(self, org_id: str, first: int) -> dict[str, Any]:
        now = utc_now()
        docs = await self.session_docs(org_id, first, now)
        ranges = [
            (d["_id"], max(1, d["message_count"] - LAST_MESSAGES + 1), d["message_count"])
            for d in docs
        ]
        found = await self.in_ranges(org_id, ranges)
        nodes = []
        for doc in docs:
            fields = _session_fields(doc, now)
            del fields["createdAt"]
            fields["messages"] = {
                "nodes": [
                    {
                        "seq": m["seq"],
                        "role": m["role"].upper(),
                        "content": m.get("content", m.get("message")),
                    }
                    for m in found.get(doc["_id"], [])
                ]
            }
            nodes.append(fields)
        return {"nodes": nodes}


async def answer(
    reads: Reads, org_id: str, operation: str | None, variables: dict[str, Any]
) -> dict[str, Any] | None:
    """The `data` of the operation named `operation`; None for one this endpoint does not
    know."""
    if operation == "SessionById":
        return {"session": await reads.session_by_id(org_id, variables["id"])}
    if operation == "SessionMessages":
        return {"session": await reads.session_messages(org_id, variables["id"])}
    if operation == "SessionList":
        return {"sessions": await reads.session_list(org_id, variables["first"])}
    if operation == "SessionListing":
        return {"sessions": await reads.session_listing(org_id, variables["first"])}
    return None


def create_app(uri: str, db_name: str, cache_seconds: float) -> Starlette:
    state: dict[str, Reads] = {}
    verified: dict[str, tuple[str, float]] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            uuidRepresentation="standard",
            appname="bench-baseline",
        )
        await client.admin.command("hello")
        planner = planner_of(await client.admin.command("buildInfo"))
        state["reads"] = Reads(client.get_database(db_name), planner)
        try:
            yield
        finally:
            await client.close()

    async def organization_of(authorization: str | None) -> str | None:
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX):
            return None
        now = time.monotonic()
        cached = verified.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        doc = await state["reads"].keys.find_one(
            {"key_hash": hashlib.sha256(key.encode()).hexdigest(), "revoked_at": None},
            {"org_id": 1},
        )
        if doc is None:
            return None
        if cache_seconds > 0:
            verified[key] = (str(doc["org_id"]), now + cache_seconds)
        return str(doc["org_id"])

    async def graphql(request: Request) -> Response:
        org_id = await organization_of(request.headers.get("authorization"))
        if org_id is None:
            return Response(b'{"errors":[{"message":"unauthenticated"}]}', 401)
        try:
            body = orjson.loads(await request.body())
        except ClientDisconnect:  # wrk stopping mid-request at the end of a run
            return Response(status_code=400)
        variables = body.get("variables") or {}
        data = await answer(state["reads"], org_id, body.get("operationName"), variables)
        if data is None:
            return Response(b'{"errors":[{"message":"unknown operation"}]}', 400)
        return Response(orjson.dumps({"data": data}), media_type="application/json")

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/graphql", graphql, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_app(
        os.environ["MONGODB_URI"],
        os.environ.get("SESSIONGRAPH_DB_NAME", "sessiongraph"),
        float(os.environ.get("SESSIONGRAPH_AUTH_CACHE_SECONDS", "5")),
    )
    # As `sessiongraph serve` runs uvicorn: one worker, default loop and HTTP implementation.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", ws_per_message_deflate=False
    )


if __name__ == "__main__":
    main()
