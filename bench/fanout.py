"""Fan-out: publish→deliver latency with many subscribers on one session.

Each subscriber holds its own websocket (graphql-transport-ws) subscribed to `messageAdded`.
Messages are appended one at a time over HTTP; latency is the time a subscriber receives a
message minus the message's `createdAt` (set by the server when it appends). Subscribers are
spread over client processes so the load client is not the bottleneck it measures.

Warm-up messages are appended until every subscriber has received one (so every subscription
is live); those deliveries are left out. With several server processes (--servers), the
subscribers are split evenly between them, appends go to each in turn, and the servers hear
of each other's writes through a change stream (SESSIONGRAPH_EVENTS_MODE=changestream).

Results are merged into bench/results/fanout.json by (subscribers, servers): a run replaces
the entries it measured and keeps the others.

With `--baseline broadcaster` each run measures the server and, side by side on the same
database and with the same client, a bare broadcaster (bench/broadcaster.py: the same change
stream, one pre-built frame per socket, no GraphQL, auth or tracking), in alternating order,
and reports the server's p99 as a ratio of the broadcaster's (bench/results/fanout_floor.json).

    python -m bench.fanout                      # 100 and 1,000 subscribers, one server
    python -m bench.fanout --scenario two-servers   # 5,000 subscribers on two servers
    python -m bench.fanout --subscribers 5000 --servers 2 --client-processes 2
    python -m bench.fanout --baseline broadcaster --subscribers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import queue
import resource
import signal
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import websockets

from bench.harness import (
    RESULTS,
    Bench,
    Server,
    bench,
    cpu_seconds,
    gql,
    machine,
    percentile,
    print_table,
    write_result,
)
from bench.profile import parse_raw, record, summarize, write_folded

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
SCENARIOS = {
    "default": {"subscribers": "100,1000", "servers": 1},
    "two-servers": {"subscribers": "5000", "servers": 2},
}
LAST_WRITE_BUCKET = 'sessiongraph_subscription_event_last_write_seconds_bucket{field="messageAdded"'
"""The server's own measure: each event's commit to its last write (a histogram)."""
DELIVERED = 'sessiongraph_subscription_events_delivered_total{field="messageAdded"}'
"""The server's count of results sent to subscribers."""
RECEIVE_TIMEOUT_SECONDS = 120
SETUP_STORM = 2_000
"""Subscribers per server above which the servers get longer init and request timeouts."""
FD_MARGIN = 1024


async def _subscriber(
    url: str,
    key: str,
    session_id: str,
    live: asyncio.Event,
    counter: list[int],
    total: int,
    latencies: list[float],
    measured_from: Any,
    last_seq: Any,
    checks: list[int],
) -> None:
    """One subscriber; `checks` counts, over the measured messages, those it never got,
    got more than once, or got out of order, and subscribers that timed out."""
    async with websockets.connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        compression=None,
        max_queue=None,
        open_timeout=120,
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
        seen: list[int] = []
        try:
            await _receive(ws, live, counter, total, latencies, measured_from, last_seq, seen)
        except TimeoutError:
            checks[3] += 1  # a lost message; the missing deliveries show in the count
        expected = range(measured_from.value, last_seq.value + 1)
        checks[0] += len(set(expected) - set(seen))
        checks[1] += len(seen) - len(set(seen))
        checks[2] += sum(1 for a, b in itertools.pairwise(seen) if b <= a)


async def _receive(
    ws: Any,
    live: asyncio.Event,
    counter: list[int],
    total: int,
    latencies: list[float],
    measured_from: Any,
    last_seq: Any,
    seen: list[int],
) -> None:
    """Read one subscriber's results until the last measured one."""
    first = True
    while True:
        raw = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_SECONDS)
        frame = json.loads(raw)
        if frame.get("type") != "next":
            continue
        now = time.time()
        added = frame["payload"]["data"]["messageAdded"]
        if first:  # a warm-up message: this subscription is live
            first = False
            counter[0] += 1
            if counter[0] == total:
                live.set()
            continue
        seq = added["seq"]
        start = measured_from.value
        if start and seq >= start:
            seen.append(seq)
            created = datetime.fromisoformat(added["createdAt"])
            latencies.append((now - created.timestamp()) * 1000)
        if last_seq.value and seq >= last_seq.value:
            return


def _client_process(
    urls: list[str],
    key: str,
    session_id: str,
    count: int,
    first_index: int,
    measured_from: Any,
    last_seq: Any,
    live_queue: Any,
    result_queue: Any,
) -> None:
    async def run() -> dict[str, Any]:
        live = asyncio.Event()
        counter = [0]
        latencies: list[float] = []
        checks = [0, 0, 0, 0]
        shared = (live, counter, count, latencies, measured_from, last_seq, checks)
        tasks = [
            asyncio.create_task(
                _subscriber(urls[(first_index + i) % len(urls)], key, session_id, *shared)
            )
            for i in range(count)
        ]
        await live.wait()
        live_queue.put(count)
        await asyncio.gather(*tasks)
        lost, repeated, out_of_order, timed_out = checks
        return {
            "latencies": latencies,
            "lost": lost,
            "repeated": repeated,
            "out_of_order": out_of_order,
            "timed_out": timed_out,
        }

    try:
        import uvloop

        result_queue.put(uvloop.run(run()))
    except ImportError:
        result_queue.put(asyncio.run(run()))


async def last_write_buckets(http: Any, server: Server) -> dict[float, float] | None:
    """The server's cumulative event→last-write histogram, by upper bound in seconds (None
    for a process without sessiongraph's metrics, such as the bare broadcaster); under the
    key -1.0, the results it has sent to subscribers."""
    response = await http.get(server.url.removesuffix("/graphql") + "/metrics")
    if response.status_code != 200:
        return None
    buckets: dict[float, float] = {}
    for line in response.text.splitlines():
        if line.startswith(LAST_WRITE_BUCKET):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(DELIVERED):
            buckets[-1.0] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_percentile(before: dict[float, float], after: dict[float, float], p: float) -> float:
    """The upper bound (ms) of the bucket holding the p-th percentile of what was observed
    between two scrapes."""
    bounds = sorted(b for b in after if b >= 0)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if after[bound] - before.get(bound, 0.0) >= p / 100 * total:
            return bound * 1000
    return float("inf")


def raise_file_limit(needed: int) -> tuple[int, int]:
    """Raise this process's soft limit on open files (inherited by the servers and client
    processes it starts) to at least `needed`, up to the hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(f"warning: open files limited to {soft} (hard limit); {needed} wanted")
    return soft, hard


async def measure(
    b: Bench,
    servers: list[Server],
    subscribers: int,
    messages: int,
    client_processes: int,
    appends_to: Server | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Subscribers on `servers`; messages appended through `appends_to` (default: the
    servers in turn). With `profile`, py-spy samples the first server while the measured
    messages are delivered and writes its raw stacks there."""
    async with b.client() as http:
        writer = appends_to or servers[0]
        session_id = (await gql(http, writer.url, CREATE))["createSession"]["id"]
        rss_before = [s.memory_kib()[0] for s in servers]
        context = multiprocessing.get_context("spawn")
        live_queue, result_queue = context.Queue(), context.Queue()
        measured_from, last_seq = context.Value("q", 0), context.Value("q", 0)
        processes = min(client_processes, subscribers)
        shares = [subscribers // processes] * processes
        shares[0] += subscribers - sum(shares)
        starts = [sum(shares[:i]) for i in range(processes)]
        urls = [s.ws_url for s in servers]
        queues = (measured_from, last_seq, live_queue, result_queue)
        workers = [
            context.Process(
                target=_client_process, args=(urls, b.key, session_id, share, start, *queues)
            )
            for share, start in zip(shares, starts, strict=True)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        # Warm-up messages until every subscriber has had one: then all subscriptions are live.
        # A warm-up append may time out while thousands of connections are set up: it is
        # retried, and the measured messages follow the last one known to be appended.
        seq: int | None = None
        live = 0
        deadline = time.monotonic() + 600
        while live < len(workers) or seq is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {live} of {len(workers)} client processes went live")
            try:
                appended = await gql(http, writer.url, APPEND, sessionId=session_id)
                seq = appended["addMessages"][0]["seq"]
            except RuntimeError as error:
                print(f"warm-up append failed, retried: {error}")
                seq = None
            await asyncio.sleep(1.0)
            while True:
                try:
                    live_queue.get_nowait()
                except queue.Empty:
                    break
                live += 1
        setup_seconds = time.monotonic() - started
        await asyncio.sleep(1.0)
        rss_idle = [s.memory_kib()[0] for s in servers]
        measured_from.value = seq + 1
        last_seq.value = seq + messages
        buckets_before = [await last_write_buckets(http, s) for s in servers]
        cpu_before = [cpu_seconds(s.process.pid) for s in servers]
        spy = await record(servers[0].process.pid, 100, profile) if profile else None
        for index in range(messages):
            target = appends_to or servers[index % len(servers)]
            await gql(http, target.url, APPEND, sessionId=session_id)
            await asyncio.sleep(max(0.05, subscribers / 10_000))
        latencies: list[float] = []
        checks = {"lost": 0, "repeated": 0, "out_of_order": 0, "timed_out": 0}
        for _ in workers:
            got = await asyncio.to_thread(result_queue.get, True, 300)
            latencies.extend(got["latencies"])
            for name in checks:
                checks[name] += got[name]
        for worker in workers:
            worker.join(30)
        cpu_used = [
            cpu_seconds(s.process.pid) - c for s, c in zip(servers, cpu_before, strict=True)
        ]
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await spy.wait()
        buckets_after = [await last_write_buckets(http, s) for s in servers]
        peak = [s.memory_kib()[1] for s in servers]
    measured = sorted(latencies)
    per_server = subscribers / len(servers)
    server_side: dict[str, Any] = {}
    first_before, first_after = buckets_before[0], buckets_after[0]
    if first_before is not None and first_after:
        # The first server's own figure, bucketed: commit → last write of each event.
        for p in (50, 99):
            server_side[f"last_write_p{p}_ms_at_most"] = bucket_percentile(
                first_before, first_after, p
            )
        # Each process's own: its commit → last write, and the results it sent (the
        # measured messages only: the warm-up ones were sent before the first scrape).
        server_side["per_server"] = [
            {
                "delivered": (after or {}).get(-1.0, 0.0) - (before or {}).get(-1.0, 0.0),
                "expected": subscribers // len(servers) * messages,
                **{
                    f"last_write_p{p}_ms_at_most": bucket_percentile(before or {}, after, p)
                    for p in (50, 99)
                },
            }
            for before, after in zip(buckets_before, buckets_after, strict=True)
            if after
        ]
    return {
        **server_side,
        "subscribers": subscribers,
        "servers": len(servers),
        "client_processes": processes,
        "messages": messages,
        "deliveries": len(measured),
        "expected_deliveries": subscribers * messages,
        **checks,
        # The servers' CPU over the measured messages (fan-out, appends and change streams).
        "server_cpu_us_per_delivery": sum(cpu_used) / max(1, len(measured)) * 1e6,
        "setup_seconds": setup_seconds,
        "p50_ms": percentile(measured, 50),
        "p99_ms": percentile(measured, 99),
        "max_ms": max(measured),
        "mean_ms": statistics.fmean(measured),
        "idle_subscribers_rss_mib": sum(i - b for i, b in zip(rss_idle, rss_before, strict=True))
        / 1024,
        "rss_per_subscriber_kib": statistics.fmean(
            (idle - before) / per_server for idle, before in zip(rss_idle, rss_before, strict=True)
        ),
        "server_peak_rss_mib": max(peak) / 1024,
        "server_peak_rss_mib_each": [p / 1024 for p in peak],
    }


FANOUT_PARTS: list[tuple[str, str]] = [
    ("Metrics.event_delivered", "metrics per send (deliveries counter, fan-out histogram)"),
    ("Metrics.event_written", "metrics per event (last write)"),
    ("SubscriptionTracker.sent", "tracking per send"),
    ("WebSocketsSansIOProtocol.send", "socket write: uvicorn/websockets framing + write()"),
    ("WebSocket.send", "Starlette's websocket send (ASGI message, exception wrapper)"),
    ("TransportWSSession.send", "our frame: id + payload string"),
    ("Member.write_now", "the group's one pass (write_now)"),
    ("_Group._deliver", "the group's one pass (_deliver)"),
    ("LiveEngine._send (", "our send: tracking and metrics calls"),
    ("LiveEngine._shared (", "member task: queue hop and wake-up"),
    ("Queue.get (", "member task: queue hop and wake-up"),
    ("delivery_of", "one execution and encoding per event (shared)"),
    ("_Group._run", "one execution per event (shared)"),
    ("pymongo/", "database: appends and change stream (PyMongo)"),
    ("RequestResponseCycle", "HTTP: the appends"),
    ("WebSocketSession.serve", "websocket reads (pongs)"),
    ("_ping_forever", "keep-alive pings"),
    ("Runner.run (", "event loop (uvloop in C: epoll, callbacks)"),
]
"""Where a fan-out sample goes: the innermost of these markers on its stack."""


def fanout_story(raw: str) -> dict[str, Any]:
    """A py-spy profile of a server during fan-out: the share of samples per part of the
    path (the innermost marker on each stack), and bench.profile's tables."""
    stacks = parse_raw(raw)
    parts: Counter[str] = Counter()
    for stack, count in stacks.items():
        part = "other"
        for frame in reversed(stack):
            found = next((name for marker, name in FANOUT_PARTS if marker in frame), None)
            if found is not None:
                part = found
                break
        parts[part] += count
    total = sum(parts.values()) or 1
    return {
        "samples": total,
        "by_part": [
            {"part": part, "samples": n, "percent": 100 * n / total}
            for part, n in parts.most_common()
        ],
        **summarize(stacks, 15),
    }


def merge_results(new: list[dict[str, Any]]) -> Any:
    """Write `new` into bench/results/fanout.json, replacing entries with the same
    (subscribers, servers) and keeping the rest; each entry records its machine and time."""
    path = RESULTS / "fanout.json"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kept: list[dict[str, Any]] = []
    if path.exists():
        old = json.loads(path.read_text())
        for entry in old.get("results", []):
            entry.setdefault("machine", old.get("machine"))
            entry.setdefault("at", old.get("at"))
            kept.append(entry)
    measured = {(e["subscribers"], e["servers"]) for e in new}
    kept = [e for e in kept if (e["subscribers"], e["servers"]) not in measured]
    entries = sorted(
        kept + [{**e, "machine": machine(), "at": at} for e in new],
        key=lambda e: (e["servers"], e["subscribers"]),
    )
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": "fanout", "machine": machine(), "at": at, "results": entries}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="default",
        help="default: 100 and 1,000 subscribers on one server; two-servers: 5,000 "
        "subscribers split between two server processes (change streams)",
    )
    parser.add_argument("--subscribers", help="comma-separated counts (overrides the scenario)")
    parser.add_argument("--servers", type=int, help="server processes on one database")
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="runs per count; medians are reported")
    parser.add_argument(
        "--baseline",
        choices=["broadcaster"],
        help="also measure a bare broadcaster side by side and report the p99 ratio",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one run of the first count, py-spy sampling the first server while the measured "
        "messages are delivered: bench/results/fanout_profile.json",
    )
    args = parser.parse_args()
    if args.profile:
        await profile_fanout(args)
        return
    if args.baseline == "broadcaster":
        counts = [int(c) for c in (args.subscribers or "1000").split(",")]
        raise_file_limit(max(counts) + FD_MARGIN)
        await against_broadcaster(counts, args.messages, args.client_processes, args.runs)
        return
    scenario = SCENARIOS[args.scenario]
    counts = [int(c) for c in (args.subscribers or str(scenario["subscribers"])).split(",")]
    server_count = args.servers or int(scenario["servers"])
    limits = raise_file_limit(max(counts) + FD_MARGIN)
    env = {"SESSIONGRAPH_EVENTS_MODE": "changestream"} if server_count > 1 else {}
    if max(counts) / server_count > SETUP_STORM:
        # Thousands of handshakes at once on a small machine: give each connection's
        # connection_init, and the warm-up appends, time to be served.
        env |= {
            "SESSIONGRAPH_WS_INIT_TIMEOUT_SECONDS": "120",
            "SESSIONGRAPH_REQUEST_TIMEOUT_SECONDS": "60",
        }
    rows = []
    results = []
    async with bench() as b:
        for count in counts:
            runs = []
            for run in range(args.runs):
                async with _Servers(b, server_count, env) as servers:
                    result = await measure(b, servers, count, args.messages, args.client_processes)
                runs.append(result)
                print(
                    f"run {run + 1}/{args.runs}: {count} subscribers on {server_count} "
                    f"server(s): p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                    f"max {result['max_ms']:.1f} ms, {result['deliveries']}/"
                    f"{result['expected_deliveries']} deliveries"
                )
            summary: dict[str, Any] = {
                key: statistics.median(run[key] for run in runs)
                for key in runs[0]
                if isinstance(runs[0][key], int | float)
            }
            summary["events_mode"] = env.get("SESSIONGRAPH_EVENTS_MODE", "auto")
            summary["open_files_limit"] = limits[0]
            summary["runs"] = runs
            results.append(summary)
            rows.append(
                [
                    count,
                    server_count,
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
    print(f"\nmerged into {merge_results(results)}")


async def against_broadcaster(
    counts: list[int], messages: int, client_processes: int, runs: int
) -> None:
    """The server and the bare broadcaster, side by side, alternating which goes first."""
    results = []
    rows = []
    async with bench() as b:
        for count in counts:
            pairs = []
            for run in range(runs):
                async with (
                    b.server(SESSIONGRAPH_EVENTS_MODE="changestream") as server,
                    b.server(module="bench.broadcaster") as floor,
                ):
                    order = [("server", [server]), ("broadcaster", [floor])]
                    if run % 2:
                        order.reverse()
                    pair: dict[str, Any] = {}
                    for name, targets in order:
                        pair[name] = await measure(
                            b, targets, count, messages, client_processes, appends_to=server
                        )
                pair["p99_ratio"] = pair["server"]["p99_ms"] / pair["broadcaster"]["p99_ms"]
                pair["p50_ratio"] = pair["server"]["p50_ms"] / pair["broadcaster"]["p50_ms"]
                pairs.append(pair)
                print(
                    f"run {run + 1}/{runs}, {count} subscribers: server p50 "
                    f"{pair['server']['p50_ms']:.1f} p99 {pair['server']['p99_ms']:.1f} ms; "
                    f"broadcaster p50 {pair['broadcaster']['p50_ms']:.1f} p99 "
                    f"{pair['broadcaster']['p99_ms']:.1f} ms; p99 ratio {pair['p99_ratio']:.2f}; "
                    "server-side event→last write p99 ≤ "
                    f"{pair['server'].get('last_write_p99_ms_at_most', float('nan')):g} ms"
                )
            summary = {
                "subscribers": count,
                "server_p50_ms": statistics.median(p["server"]["p50_ms"] for p in pairs),
                "server_p99_ms": statistics.median(p["server"]["p99_ms"] for p in pairs),
                "broadcaster_p50_ms": statistics.median(p["broadcaster"]["p50_ms"] for p in pairs),
                "broadcaster_p99_ms": statistics.median(p["broadcaster"]["p99_ms"] for p in pairs),
                "p99_ratio": statistics.median(p["p99_ratio"] for p in pairs),
                "p50_ratio": statistics.median(p["p50_ratio"] for p in pairs),
                "runs": pairs,
            }
            results.append(summary)
            rows.append(
                [
                    count,
                    summary["server_p50_ms"],
                    summary["server_p99_ms"],
                    summary["broadcaster_p50_ms"],
                    summary["broadcaster_p99_ms"],
                    summary["p99_ratio"],
                ]
            )
    print_table(
        f"fan-out against a bare broadcaster (median of {runs} runs, {messages} messages)",
        ["subscribers", "server p50", "server p99", "floor p50", "floor p99", "p99 ratio"],
        rows,
    )
    print(f"\nwritten to {write_result('fanout_floor', {'results': results})}")


async def profile_fanout(args: argparse.Namespace) -> None:
    """One profiled run (see --profile)."""
    count = int((args.subscribers or "1000").split(",")[0])
    raise_file_limit(count + FD_MARGIN)
    with tempfile.NamedTemporaryFile(suffix=".raw") as raw:
        async with bench() as b, _Servers(b, 1, {}) as servers:
            result = await measure(
                b, servers, count, args.messages, args.client_processes, profile=raw.name
            )
        text = await asyncio.to_thread(Path(raw.name).read_text)
        story = fanout_story(text)
        write_folded(parse_raw(text), RESULTS / "fanout_profile.folded")
    print_table(
        f"where the server's CPU went: {count} subscribers, {args.messages} messages "
        f"({story['samples']} samples, {result['server_cpu_us_per_delivery']:.1f} us of server "
        "CPU per delivery)",
        ["part", "% samples"],
        [[row["part"], row["percent"]] for row in story["by_part"]],
    )
    path = write_result("fanout_profile", {"run": result, "profile": story})
    print(f"\nwritten to {path}")


class _Servers:
    """Several server processes on one database, started together."""

    def __init__(self, b: Bench, count: int, env: dict[str, str]) -> None:
        self.contexts = [b.server(**env) for _ in range(count)]

    async def __aenter__(self) -> list[Server]:
        return [await context.__aenter__() for context in self.contexts]

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self.contexts):
            await context.__aexit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main())
