"""Fan-out: publish→deliver latency with many subscribers on one session.

Each subscriber holds its own websocket (graphql-transport-ws) subscribed to `messageAdded`.
Messages are appended one at a time over HTTP; latency is the time a subscriber receives a
message minus the message's `createdAt` (set by the server when it appends). Subscribers are
spread over client processes so the load client is not the bottleneck it measures.

    python -m bench.fanout                      # 100 and 1,000 subscribers, one server
    python -m bench.fanout --subscribers 5000 --servers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from datetime import datetime
from typing import Any

import websockets

from bench.harness import Bench, Server, bench, gql, percentile, print_table, write_result

SUBSCRIBE = """
subscription Watch($sessionId: ID!) {
  messageAdded(sessionId: $sessionId) { seq createdAt }
}
"""
CREATE = 'mutation { createSession(input: {name: "fanout"}) { id } }'
APPEND = """
mutation Append($sessionId: ID!) {
  addMessages(sessionId: $sessionId, messages: [{assistant: {content: "tick"}}]) { seq }
}
"""


async def _subscriber(
    url: str,
    key: str,
    session_id: str,
    ready: asyncio.Event,
    counter: list[int],
    total: int,
    latencies: list[float],
    expected: int,
) -> None:
    async with websockets.connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        compression=None,
        max_queue=None,
        open_timeout=60,
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"sessionId": session_id}},
                }
            )
        )
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        received = 0
        while received < expected:
            frame = json.loads(await ws.recv())
            if frame.get("type") != "next":
                continue
            now = time.time()
            created = datetime.fromisoformat(frame["payload"]["data"]["messageAdded"]["createdAt"])
            if received > 0:  # the first is the warm-up message
                latencies.append((now - created.timestamp()) * 1000)
            received += 1


def _client_process(
    urls: list[str],
    key: str,
    session_id: str,
    count: int,
    expected: int,
    ready_queue: Any,
    result_queue: Any,
) -> None:
    async def run() -> list[float]:
        ready = asyncio.Event()
        counter = [0]
        latencies: list[float] = []
        tasks = [
            asyncio.create_task(
                _subscriber(
                    urls[i % len(urls)], key, session_id, ready, counter, count, latencies, expected
                )
            )
            for i in range(count)
        ]
        await ready.wait()
        ready_queue.put(count)
        await asyncio.gather(*tasks)
        return latencies

    try:
        import uvloop

        result_queue.put(uvloop.run(run()))
    except ImportError:
        result_queue.put(asyncio.run(run()))


async def measure(
    b: Bench, servers: list[Server], subscribers: int, messages: int, client_processes: int
) -> dict[str, Any]:
    async with b.client() as http:
        session_id = (await gql(http, servers[0].url, CREATE))["createSession"]["id"]
        rss_before = [s.memory_kib()[0] for s in servers]
        context = multiprocessing.get_context("spawn")
        ready_queue, result_queue = context.Queue(), context.Queue()
        processes = min(client_processes, subscribers)
        shares = [subscribers // processes] * processes
        shares[0] += subscribers - sum(shares)
        workers = [
            context.Process(
                target=_client_process,
                args=(
                    [s.ws_url for s in servers],
                    b.key,
                    session_id,
                    share,
                    messages + 1,
                    ready_queue,
                    result_queue,
                ),
            )
            for share in shares
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            await asyncio.to_thread(ready_queue.get, True, 300)
        # A warm-up message: once every subscriber has it, all subscriptions are live.
        await asyncio.sleep(1.0)
        rss_idle = [s.memory_kib()[0] for s in servers]
        await gql(http, servers[0].url, APPEND, sessionId=session_id)
        await asyncio.sleep(1.0)
        for index in range(messages):
            target = servers[index % len(servers)]
            await gql(http, target.url, APPEND, sessionId=session_id)
            await asyncio.sleep(max(0.05, subscribers / 10_000))
        latencies: list[float] = []
        for _ in workers:
            latencies.extend(await asyncio.to_thread(result_queue.get, True, 300))
        for worker in workers:
            worker.join(30)
        peak = [s.memory_kib()[1] for s in servers]
    measured = sorted(latencies)
    per_subscriber_kib = [
        (idle - before) / (subscribers / len(servers))
        for idle, before in zip(rss_idle, rss_before, strict=True)
    ]
    return {
        "subscribers": subscribers,
        "servers": len(servers),
        "messages": messages,
        "deliveries": len(measured),
        "p50_ms": percentile(measured, 50),
        "p99_ms": percentile(measured, 99),
        "max_ms": max(measured),
        "mean_ms": statistics.fmean(measured),
        "idle_subscribers_rss_mib": sum(i - b for i, b in zip(rss_idle, rss_before, strict=True))
        / 1024,
        "rss_per_subscriber_kib": statistics.fmean(per_subscriber_kib),
        "server_peak_rss_mib": max(peak) / 1024,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", default="100,1000", help="comma-separated counts")
    parser.add_argument("--servers", type=int, default=1, help="server processes on one database")
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="runs per count; medians are reported")
    args = parser.parse_args()
    rows = []
    results = []
    async with bench() as b:
        for count in (int(c) for c in args.subscribers.split(",")):
            runs = []
            for _ in range(args.runs):
                async with _Servers(b, args.servers) as servers:
                    runs.append(
                        await measure(b, servers, count, args.messages, args.client_processes)
                    )
            summary = {
                key: statistics.median(run[key] for run in runs)
                for key in runs[0]
                if isinstance(runs[0][key], int | float)
            }
            summary["runs"] = runs
            results.append(summary)
            rows.append(
                [
                    count,
                    args.servers,
                    summary["p50_ms"],
                    summary["p99_ms"],
                    summary["max_ms"],
                    summary["idle_subscribers_rss_mib"],
                    summary["server_peak_rss_mib"],
                ]
            )
    print_table(
        f"fan-out (median of {args.runs} runs, {args.messages} messages each)",
        ["subscribers", "servers", "p50 ms", "p99 ms", "max ms", "idle subs MiB", "peak RSS MiB"],
        rows,
    )
    name = "fanout" if args.servers == 1 else f"fanout_{args.servers}servers"
    print(f"\nwritten to {write_result(name, {'results': results})}")


class _Servers:
    """Several server processes on one database, started together."""

    def __init__(self, b: Bench, count: int) -> None:
        self.contexts = [b.server() for _ in range(count)]

    async def __aenter__(self) -> list[Server]:
        return [await context.__aenter__() for context in self.contexts]

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self.contexts):
            await context.__aexit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main())
