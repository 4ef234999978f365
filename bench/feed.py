"""The org-wide feed: how much later a `sessionEvents` event arrives than the same change's
`sessionUpdated` event, and what the event log costs the database.

One `sessiongraph serve` process (change stream, rate limiting off). One websocket holds
two subscriptions: `sessionUpdated(id)` of one session (the per-session path: change stream,
then the hub) and `sessionEvents` (the feed: change stream, the event log's insert, then the
hub). Appends of one message are made one at a time over HTTP; for each, the time from the
mutation's answer to each subscription's event. The ratio feed / sessionUpdated, measured in
the same run on the same changes, is the cost of logging before publishing. Then the same
appends against a server on its own database with `SESSIONGRAPH_EVENTS_MODE=local` (no change
stream, no log) give the baseline for append time and the database's CPU per append.

    python -m bench.feed                 # 300 appends
    python -m bench.feed --appends 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from websockets.asyncio.client import connect

from bench.harness import (
    Bench,
    bench,
    cpu_seconds,
    gql,
    percentile,
    print_table,
    write_result,
)

CREATE = 'mutation { createSession(input: {name: "feed"}) { id } }'
APPEND = """
mutation Append($s: ID!) { addMessages(sessionId: $s, messages: [{user: {content: "x"}}]) { seq } }
"""
SESSION_UPDATED = "subscription ($s: ID!) { sessionUpdated(id: $s) { messageCount } }"
SESSION_EVENTS = "subscription { sessionEvents { cursor type session { messageCount } } }"


async def appends(b: Bench, url: str, count: int) -> list[float]:
    """Seconds per append, `count` appends to a new session, one at a time."""
    async with b.client() as http:
        session_id = (await gql(http, url, CREATE))["createSession"]["id"]
        took = []
        for _ in range(count):
            start = time.perf_counter()
            await gql(http, url, APPEND, s=session_id)
            took.append(time.perf_counter() - start)
    return took


async def delivery(b: Bench, url: str, ws_url: str, count: int) -> dict[str, list[float]]:
    """For each append: seconds from its answer to the sessionUpdated and sessionEvents events."""
    lags: dict[str, list[float]] = {"updated": [], "feed": []}
    async with b.client() as http, connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        session_id = (await gql(http, url, CREATE))["createSession"]["id"]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {b.key}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for id, query, variables in (
            ("updated", SESSION_UPDATED, {"s": session_id}),
            ("feed", SESSION_EVENTS, {}),
        ):
            payload = {"query": query, "variables": variables}
            await ws.send(json.dumps({"id": id, "type": "subscribe", "payload": payload}))
        await asyncio.sleep(0.5)
        for seq in range(1, count + 1):
            await gql(http, url, APPEND, s=session_id)
            answered = time.perf_counter()
            waiting = {"updated", "feed"}
            while waiting:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("type") != "next":
                    continue
                data = message["payload"]["data"]
                count_seen = (
                    data["sessionUpdated"]["messageCount"]
                    if message["id"] == "updated"
                    else (data["sessionEvents"]["session"] or {}).get("messageCount")
                )
                if count_seen == seq and message["id"] in waiting:
                    lags[message["id"]].append(time.perf_counter() - answered)
                    waiting.discard(message["id"])
    return lags


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


async def main(count: int) -> None:
    async with bench() as b:
        async with b.server(SESSIONGRAPH_RATE_LIMIT_PER_SECOND="0") as server:
            lags = await delivery(b, server.url, server.ws_url, count)
            db_cpu = cpu_seconds(b.db_pid) if b.db_pid else 0.0
            logged = await appends(b, server.url, count)
            db_cpu_logged = (cpu_seconds(b.db_pid) if b.db_pid else 0.0) - db_cpu
        async with b.server(
            SESSIONGRAPH_RATE_LIMIT_PER_SECOND="0", SESSIONGRAPH_EVENTS_MODE="local"
        ) as server:
            db_cpu = cpu_seconds(b.db_pid) if b.db_pid else 0.0
            local = await appends(b, server.url, count)
            db_cpu_local = (cpu_seconds(b.db_pid) if b.db_pid else 0.0) - db_cpu
    result: dict[str, Any] = {
        "appends": count,
        "sessionUpdated_lag_ms": {
            "p50": ms(lags["updated"]),
            "p95": round(percentile(lags["updated"], 95) * 1000, 2),
        },
        "sessionEvents_lag_ms": {
            "p50": ms(lags["feed"]),
            "p95": round(percentile(lags["feed"], 95) * 1000, 2),
        },
        "feed_over_sessionUpdated_p50": round(ms(lags["feed"]) / ms(lags["updated"]), 2),
        "append_ms_changestream_and_log": ms(logged),
        "append_ms_local_baseline": ms(local),
        "append_ratio": round(ms(logged) / ms(local), 2),
        "db_cpu_ms_per_append_changestream_and_log": round(db_cpu_logged / count * 1000, 3),
        "db_cpu_ms_per_append_local_baseline": round(db_cpu_local / count * 1000, 3),
    }
    print_table(
        "sessionEvents vs sessionUpdated (ms after the append's answer)",
        ["path", "p50", "p95"],
        [
            ["sessionUpdated", *result["sessionUpdated_lag_ms"].values()],
            ["sessionEvents", *result["sessionEvents_lag_ms"].values()],
        ],
    )
    print(json.dumps(result, indent=2))
    write_result("feed", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=300)
    asyncio.run(main(parser.parse_args().appends))
