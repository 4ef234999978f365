"""The baseline of bench.http: the same answers with nothing but Starlette, PyMongo and orjson.

One endpoint, POST /graphql, answers the operations bench.http sends, by operationName,
with exactly the JSON the GraphQL server returns for them (bench.http checks that before it
measures), doing the same database work the storage layer does:

- the API key: its SHA-256 looked up in `api_keys` (`{key_hash, revoked_at: None}`,
  projection `{org_id: 1}`), remembered for SESSIONGRAPH_AUTH_CACHE_SECONDS (5, as the server
  does by default);
- SessionById and SessionMessages: `sessions.find({_id: {$in: [id]}, org_id},
  {phone_number_secrets: 0})`, as `SessionStore.get_many` issues it for the request's session
  DataLoader, then its first 10 messages with `messages.find({session_id, seq: {$gte, $lte}})`
  sorted by (session_id, seq), batch size expected + 1, the organization checked on each
  message, as `MessageStore.in_ranges` issues it;
- SessionList: `sessions.find({$and: [{org_id}]}, {phone_number_secrets: 0})` sorted by
  (created_at, _id) descending with limit first + 1, as `SessionStore.list` issues it;
- SessionListing: that page, then its sessions' last 5 messages in one
  `messages.find({$or: [{session_id, seq: {$gte, $lte}}, ...]})`, as the messages DataLoader
  batches them.

bench/yoga/server.js is the same in Node: GraphQL Yoga over the official driver.

It runs in its own process under uvicorn with the settings `sessiongraph serve` uses: one
worker, uvicorn's default ("auto") event loop and HTTP implementation (uvloop and httptools
when installed), log level warning.

    python -m bench.baseline --port 8001     # MONGODB_URI and SESSIONGRAPH_DB_NAME from env
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PUBLIC_FIELDS = {"phone_number_secrets": 0}
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


def create_app(uri: str, db_name: str, cache_seconds: float) -> Starlette:
    collections: dict[str, Any] = {}
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
        db = client.get_database(db_name)
        collections.update(sessions=db["sessions"], messages=db["messages"], keys=db["api_keys"])
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
        doc = await collections["keys"].find_one(
            {"key_hash": hashlib.sha256(key.encode()).hexdigest(), "revoked_at": None},
            {"org_id": 1},
        )
        if doc is None:
            return None
        if cache_seconds > 0:
            verified[key] = (str(doc["org_id"]), now + cache_seconds)
        return str(doc["org_id"])

    async def session_doc(org_id: str, session_id: str) -> dict[str, Any] | None:
        found = await (
            collections["sessions"]
            .find({"_id": {"$in": [session_id]}, "org_id": org_id}, PUBLIC_FIELDS)
            .to_list(None)
        )
        return found[0] if found else None

    async def in_ranges(
        org_id: str, ranges: list[tuple[str, int, int]]
    ) -> dict[str, list[dict[str, Any]]]:
        wanted = [(sid, lo, hi) for sid, lo, hi in ranges if lo <= hi]
        if not wanted:
            return {}
        clauses = [{"session_id": sid, "seq": {"$gte": lo, "$lte": hi}} for sid, lo, hi in wanted]
        cursor = (
            collections["messages"]
            .find(clauses[0] if len(clauses) == 1 else {"$or": clauses})
            .sort([("session_id", ASCENDING), ("seq", ASCENDING)])
            .batch_size(sum(hi - lo + 1 for _, lo, hi in wanted) + 1)
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for m in await cursor.to_list(None):
            if m["org_id"] == org_id:
                found.setdefault(m["session_id"], []).append(m)
        return found

    async def session_by_id(org_id: str, session_id: str) -> dict[str, Any] | None:
        doc = await session_doc(org_id, session_id)
        if doc is None:
            return None
        hi = min(FIRST_MESSAGES, doc["message_count"])
        messages = (await in_ranges(org_id, [(session_id, 1, hi)])).get(session_id, [])
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

    async def session_messages(org_id: str, session_id: str) -> dict[str, Any] | None:
        doc = await session_doc(org_id, session_id)
        if doc is None:
            return None
        hi = min(FIRST_MESSAGES, doc["message_count"])
        messages = (await in_ranges(org_id, [(session_id, 1, hi)])).get(session_id, [])
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

    async def session_docs(org_id: str, first: int) -> list[dict[str, Any]]:
        cursor = (
            collections["sessions"]
            .find({"$and": [{"org_id": org_id}]}, PUBLIC_FIELDS)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(first + 1)
        )
        docs: list[dict[str, Any]] = (await cursor.to_list(None))[:first]
        return docs

    async def session_list(org_id: str, first: int) -> dict[str, Any]:
        docs = await session_docs(org_id, first)
        now = datetime.now(UTC)
        return {"nodes": [_session_fields(doc, now) for doc in docs]}

    async def session_listing(org_id: str, first: int) -> dict[str, Any]:
        docs = await session_docs(org_id, first)
        ranges = [
            (d["_id"], max(1, d["message_count"] - LAST_MESSAGES + 1), d["message_count"])
            for d in docs
        ]
        found = await in_ranges(org_id, ranges)
        now = datetime.now(UTC)
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

    async def graphql(request: Request) -> Response:
        org_id = await organization_of(request.headers.get("authorization"))
        if org_id is None:
            return Response(b'{"errors":[{"message":"unauthenticated"}]}', 401)
        try:
            body = orjson.loads(await request.body())
        except ClientDisconnect:  # wrk stopping mid-request at the end of a run
            return Response(status_code=400)
        variables = body.get("variables") or {}
        operation = body.get("operationName")
        data: dict[str, Any]
        if operation == "SessionById":
            data = {"session": await session_by_id(org_id, variables["id"])}
        elif operation == "SessionMessages":
            data = {"session": await session_messages(org_id, variables["id"])}
        elif operation == "SessionList":
            data = {"sessions": await session_list(org_id, variables["first"])}
        elif operation == "SessionListing":
            data = {"sessions": await session_listing(org_id, variables["first"])}
        else:
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
