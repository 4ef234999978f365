"""ASGI: CPU per request of the app itself, without uvicorn, against the bare baseline's app.

Accounts for the part of a request bench.http cannot resolve on a shared machine: what the
app does around the database commands and GraphQL execution (middleware, the view,
authentication, the rate limit, the response, the driver's command listeners). It seeds
bench.http's data through a server, then builds in this process `create_app(settings)` in
several configurations and bench/baseline.py's app, all on that database, runs their
lifespans, and sends each the same POST /graphql bodies one at a time as ASGI calls (the
scope uvicorn would give, the body in one message), checking every answer is 200 with the
same `data` as the baseline's. Reported: CPU microseconds per request (`time.process_time`,
this process only: the database is another process; under uvloop, as the servers run),
median of --repeats rounds of --count
requests, the configurations taking turns every 20 requests; and each one's ratio to the
baseline and to `sessiongraph` (bench.http's settings) of the same run (the median of
the rounds' ratios).

Configurations:
  baseline                   bench/baseline.py's Starlette app (the same commands, orjson)
  sessiongraph               as bench.http serves it: rate limiting off, metrics on
  metrics off                SESSIONGRAPH_METRICS=false: no metrics, no command listener
  no command listener        metrics on, but the database client without the listener
                             that counts failed commands
  rate limit, key            rate limiting on (both limits, high enough never to refuse),
                             with the API key
  rate limit, token          the same, with an access token of that key
  proxy headers              sessiongraph behind uvicorn's proxy-headers layer (which
                             uvicorn puts in front of every app, the baseline's too)
  sessiongraph, no HTTP      `Schema.execute` with the context the view makes: GraphQL
                             execution, the DataLoaders and the commands, no HTTP path
  baseline, no HTTP          the baseline's reads and its `data`, no HTTP path
So "sessiongraph" minus "sessiongraph, no HTTP" is sessiongraph's HTTP path (middleware,
view, authentication, JSON, response), and likewise for the baseline.

    python -m bench.asgi                         # SessionMessages and SessionById
    python -m bench.asgi --operations SessionMessages --count 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
import uvloop
from pymongo import AsyncMongoClient, monitoring
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bench import baseline
from bench.harness import bench, print_table, write_result
from bench.http import DOCUMENTS, NO_RATE_LIMIT, _body, seed
from sessiongraph.app import Parts, build_schema, create_app
from sessiongraph.settings import Settings
from storage.database import planner_of

OPERATIONS = ("SessionMessages", "SessionById")
TOKEN_SECRET = "bench-asgi-token-secret-of-at-least-32-characters"
NO_LIMIT = {"rate_limit_per_second": float(NO_RATE_LIMIT["SESSIONGRAPH_RATE_LIMIT_PER_SECOND"])}
HIGH_LIMITS = {
    "rate_limit_per_second": 1e6,
    "rate_limit_burst": 10**6,
    "rate_limit_points_per_second": 1e9,
    "rate_limit_points_burst": 10**9,
}
CHUNK = 20
"""Requests an app answers before the next takes its turn."""
MINT = "mutation Mint { createAccessToken(input: {ttlSeconds: 3600}) { token } }"


class Direct:
    """The same operations without HTTP: what a server does for a request apart from its
    HTTP path (`answer`, given the body's operation, returns its `data`)."""

    def __init__(self, answer: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
        self.answer = answer
        self._bodies: dict[bytes, dict[str, Any]] = {}

    async def post(self, body: bytes) -> tuple[int, bytes]:
        fields = self._bodies.get(body)
        if fields is None:  # parsed once: JSON is the HTTP path's
            fields = self._bodies[body] = orjson.loads(body)
        data = await self.answer(fields)
        return (200 if data is not None else 500), orjson.dumps({"data": data})


class InProcess:
    """An ASGI app with its lifespan running, answering POST /graphql in this process."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], authorization: str) -> None:
        self.app = app
        self.state = state
        self.authorization = authorization.encode()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """One POST /graphql with `body`, as uvicorn would hand it over: status and body."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"authorization", self.authorization),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": self.state.copy(),
        }
        sent: list[Message] = []
        received = False

        async def receive() -> Message:
            nonlocal received
            if received:
                await asyncio.Event().wait()  # http.disconnect never comes
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(
            m.get("body", b"") for m in sent if m["type"] != "http.response.start"
        )


@asynccontextmanager
async def running(app: Starlette, authorization: str) -> AsyncIterator[InProcess]:
    """`app` with its lifespan entered (its state handed to each request, as uvicorn does)."""
    async with app.router.lifespan_context(app) as state:
        yield InProcess(app, dict(state or {}), authorization)


def sessiongraph_app_settings(b: Any, **settings: Any) -> Settings:
    values: dict[str, Any] = {
        "mongodb_uri": b.uri,
        "db_name": b.db_name,
        "log_level": "WARNING",
        "token_secret": TOKEN_SECRET,
        **settings,
    }
    return Settings(**values)


def sessiongraph_app(b: Any, **settings: Any) -> Starlette:
    return create_app(sessiongraph_app_settings(b, **settings))


class _NoCommandListeners(Parts):
    def command_listeners(self) -> list[monitoring.CommandListener]:
        return []


def without_command_listeners(app: Starlette) -> Starlette:
    """`app` with its metrics, but its database client without command listeners (so
    failed commands are not counted): what the listener costs, measured."""
    parts: Parts = app.state.parts
    app.state.parts = _NoCommandListeners(parts.settings, parts.live, parts.metrics, None)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", nargs="+", choices=list(DOCUMENTS), default=OPERATIONS)
    parser.add_argument("--count", type=int, default=1000, help="requests per round (1000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; median kept (5)")
    parser.add_argument("--rotate", type=int, default=50, help="session ids cycled")
    args = parser.parse_args()

    async with bench() as b, AsyncExitStack() as stack:
        async with b.server(**NO_RATE_LIMIT) as server:
            ids = await seed(b, server.url, args.rotate, 20)
        key = f"Bearer {b.key}"
        minter = await stack.enter_async_context(running(sessiongraph_app(b), key))
        status, minted = await minter.post(orjson.dumps({"query": MINT}))
        assert status == 200, minted
        token = "Bearer " + orjson.loads(minted)["data"]["createAccessToken"]["token"]
        # Limits on, high enough that no round is refused (the defaults, 250 requests/s
        # per key, would refuse a round run faster): the work per request is the same.
        limited = await stack.enter_async_context(running(sessiongraph_app(b, **HIGH_LIMITS), key))
        served = await stack.enter_async_context(running(sessiongraph_app(b, **NO_LIMIT), key))
        apps: dict[str, InProcess | Direct] = {
            "baseline": await stack.enter_async_context(
                running(baseline.create_app(b.uri, b.db_name, 5.0), key)
            ),
            "sessiongraph": served,
            "metrics off": await stack.enter_async_context(
                running(sessiongraph_app(b, metrics=False, **NO_LIMIT), key)
            ),
            "no command listener": await stack.enter_async_context(
                running(without_command_listeners(sessiongraph_app(b, **NO_LIMIT)), key)
            ),
            "rate limit, key": limited,
            "rate limit, token": InProcess(limited.app, limited.state, token),
        }
        apps["sessiongraph, no HTTP"] = await executed(b, served, key)
        apps["baseline, no HTTP"] = await stack.enter_async_context(baseline_reads(b))
        # uvicorn's own types for ASGI apps are not Starlette's; the app is the same.
        proxied: Any = ProxyHeadersMiddleware(served.app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
        apps["proxy headers"] = InProcess(proxied, served.state, key)
        results: dict[str, dict[str, Any]] = {}
        for operation in args.operations:
            document = DOCUMENTS[operation]
            if "$id" in document:
                bodies = [_body(document, operation, id=i).encode() for i in ids]
            else:
                bodies = [_body(document, operation, first=20).encode()]
            await same_data(apps, bodies[0])
            results[operation] = await measure(apps, bodies, args.count, args.repeats)
        # Before the database is dropped and stopped, which can fail after a long run.
        report(results, args)


async def executed(b: Any, served: InProcess, authorization: str) -> Direct:
    """`Schema.execute` of the operation, as the app's view runs it (the schema the app
    builds, the context of its services for the key's caller), without HTTP."""
    settings = sessiongraph_app_settings(b, **NO_LIMIT)
    services = served.state["services"]
    caller = await services.verifier.caller_of(authorization.removeprefix("Bearer "))
    assert caller is not None
    parts = served.app.state.parts  # type: ignore[attr-defined]
    schema = build_schema(settings, parts.metrics, None)

    async def answer(fields: dict[str, Any]) -> Any:
        result = await schema.execute(
            fields["query"],
            fields.get("variables"),
            services.context(caller, uuid.uuid4().hex),
            operation_name=fields.get("operationName"),
        )
        return None if result.errors else result.data

    return Direct(answer)


@asynccontextmanager
async def baseline_reads(b: Any) -> AsyncIterator[Direct]:
    """bench/baseline.py's reads of the operation, without HTTP (and its key check)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        b.uri, tz_aware=True, uuidRepresentation="standard"
    )
    try:
        planner = planner_of(await client.admin.command("buildInfo"))
        reads = baseline.Reads(client.get_database(b.db_name), planner)
        org_id = (await reads.keys.find_one({}, {"org_id": 1}))["org_id"]

        async def answer(fields: dict[str, Any]) -> Any:
            variables = fields.get("variables") or {}
            return await baseline.answer(reads, org_id, fields.get("operationName"), variables)

        yield Direct(answer)
    finally:
        await client.close()


async def same_data(apps: dict[str, InProcess | Direct], body: bytes) -> None:
    """Every app answers `body` with 200 and the baseline's `data`."""
    expected = None
    for name, app in apps.items():
        status, answer = await app.post(body)
        data = orjson.loads(answer).get("data")
        if status != 200 or data is None:
            raise SystemExit(f"{name} answered {status}: {answer[:300]!r}")
        expected = data if expected is None else expected
        if data != expected:
            raise SystemExit(f"{name} answered other data than the baseline: {answer[:300]!r}")


async def measure(
    apps: dict[str, InProcess | Direct], bodies: list[bytes], count: int, repeats: int
) -> dict[str, Any]:
    """CPU µs per request of each app: rounds of `count` requests each, the apps taking
    turns every CHUNK requests so that the machine's changing load falls on all alike."""
    rounds: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():  # warm-up
        for body in bodies:
            await post_ok(app, body)
    for _ in range(repeats):
        spent = dict.fromkeys(apps, 0.0)
        gc.collect()
        for start in range(0, count, CHUNK):
            chunk = [bodies[i % len(bodies)] for i in range(start, min(start + CHUNK, count))]
            for name, app in apps.items():
                began = time.process_time()
                for body in chunk:
                    await post_ok(app, body)
                spent[name] += time.process_time() - began
        for name in apps:
            rounds[name].append(spent[name] / count * 1e6)

    def paired(name: str, peer: str) -> float:
        """The median of the rounds' ratios `name` ÷ `peer` (measured side by side)."""
        return statistics.median(a / b for a, b in zip(rounds[name], rounds[peer], strict=True))

    return {
        name: {
            "cpu_us_per_request": round(statistics.median(rounds[name]), 1),
            "rounds": [round(v, 1) for v in rounds[name]],
            "per_baseline": round(paired(name, "baseline"), 3),
            "per_sessiongraph": round(paired(name, "sessiongraph"), 3),
        }
        for name in apps
    }


async def post_ok(app: InProcess | Direct, body: bytes) -> None:
    status, answer = await app.post(body)
    if status != 200:
        raise SystemExit(f"answered {status}: {answer[:300]!r}")


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    for operation, rows in results.items():
        print_table(
            f"{operation}: CPU µs per request in this process (median of {args.repeats} x "
            f"{args.count})",
            ["µs/req", "÷ baseline", "÷ sessiongraph", "rounds", "app"],
            [
                [r["cpu_us_per_request"], f"{r['per_baseline']:.3f}",
                 f"{r['per_sessiongraph']:.3f}",
                 " ".join(f"{v:.0f}" for v in r["rounds"]), name]
                for name, r in rows.items()
            ],
        )  # fmt: skip
    path = write_result(
        "asgi",
        {
            "settings": {"count": args.count, "repeats": args.repeats, "rotate": args.rotate},
            "operations": results,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    # The servers' loop: uvicorn's default ("auto") runs uvloop, which uvicorn[standard]
    # installs.
    uvloop.run(main())
