"""Profile: where the GraphQL server's CPU goes under load, sampled with py-spy.

Starts a database and `sessiongraph serve` (its own process, rate limiting off:
SESSIONGRAPH_RATE_LIMIT_PER_SECOND=0), seeds the data bench.http uses (100 sessions x 20
messages), and loads one of bench.http's operations with wrk (one thread, 32 keep-alive
connections) twice:
once without the profiler (requests/s and server CPU per request for reference), then while
`py-spy record --format raw` samples the server process. Only samples of running threads are
kept (py-spy leaves out idle ones, such as the event loop waiting in epoll), so the samples
are a picture of the server's CPU time.

Printed: the top functions by own time (the frame running when sampled) and by total time
(the frame anywhere on the stack; frames every sample shares and pass-through wrappers left
out); the own time by layer (Strawberry, graphql-core, our schema, resolvers and storage,
PyMongo/BSON, uvicorn/httptools, Starlette, asyncio/uvloop, logging, metrics, ...) and by
phase (each sample goes to the innermost of: a PyMongo command, a DataLoader batch, GraphQL
execution, our HTTP view, the middleware, uvicorn's HTTP protocol, the event loop), both with
an estimate in ms per request (share x server CPU per request); the total time of landmark
functions (parse and validate, the extensions, the loaders, auth, metrics); and the source
lines with the most own time. C extensions (orjson, httptools, uvloop, BSON's encoder) do not
show as frames: their time is the calling line's. Written: bench/results/profile.json and
bench/results/profile.folded (folded stacks without line numbers, the rarest left out to keep
the file under 200 KB; `flamegraph.pl` or https://speedscope.app read it).

py-spy is a development tool, not a dependency: `pip install py-spy`. It needs permission to
read the server's memory (root, or ptrace allowed: /proc/sys/kernel/yama/ptrace_scope 0).
Needs wrk: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).

    python -m bench.profile                          # SessionMessages, 15 s, 100 samples/s
    python -m bench.profile --operation SessionListing --duration 10
    python -m bench.profile --server baseline        # the bare baseline, on the same data
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.harness import (
    RESULTS,
    Bench,
    Server,
    bench,
    load,
    print_table,
    write_result,
    wrk,
    wrk_command,
)
from bench.http import DOCUMENTS, NO_RATE_LIMIT, _baseline, _body, seed

PY_SPY_MISSING = (
    "py-spy is not installed. It is a development tool, not a dependency of the project: "
    "`pip install py-spy` (in the virtualenv: `.venv/bin/pip install py-spy`)."
)
FOLDED_MAX_BYTES = 180_000

# Layers by the first matching part of a frame's file name (py-spy shortens file names to
# the package part: "strawberry/schema/schema.py", "resolvers/sessions.py").
LAYERS: list[tuple[str, str]] = [
    ("strawberry/", "Strawberry"),
    ("graphql/", "graphql-core"),
    ("resolvers/", "our resolvers"),
    ("schema/", "our schema (types, extensions)"),
    ("storage/", "our storage"),
    ("sessiongraph/access_log", "our logging/metrics middleware"),
    ("sessiongraph/metrics", "our logging/metrics middleware"),
    ("sessiongraph/live/tracking", "our logging/metrics middleware"),
    ("sessiongraph/auth", "our auth and rate limit"),
    ("sessiongraph/rate_limit", "our auth and rate limit"),
    ("sessiongraph/", "our HTTP view and app"),
    ("pymongo/", "PyMongo"),
    ("bson/", "BSON"),
    ("uvicorn/", "uvicorn (httptools protocol)"),
    ("httptools/", "uvicorn (httptools protocol)"),
    ("starlette/", "Starlette"),
    ("uvloop/", "asyncio/uvloop"),
    ("asyncio/", "asyncio/uvloop"),
    ("prometheus_client/", "prometheus_client"),
    ("logging/", "logging (stdlib)"),
    ("json/", "json (stdlib)"),
    ("typing", "typing/dataclasses/enum (stdlib)"),
    ("dataclasses", "typing/dataclasses/enum (stdlib)"),
    ("enum", "typing/dataclasses/enum (stdlib)"),
    ("inspect", "inspect/contextvars/functools (stdlib)"),
    ("functools", "inspect/contextvars/functools (stdlib)"),
    ("contextlib", "inspect/contextvars/functools (stdlib)"),
    ("datetime", "datetime (stdlib)"),
    ("_strptime", "datetime (stdlib)"),
]


# Where a sample's time belongs: the first of these met walking its stack from the running
# frame towards the root (a marker is a piece of "function (file)").
PHASES: list[tuple[str, str]] = [
    ("pymongo/", "PyMongo/BSON (commands: encode, send, receive, decode)"),
    ("bson/", "PyMongo/BSON (commands: encode, send, receive, decode)"),
    ("dispatch_batch (", "DataLoader batches: our loaders, storage, records"),
    ("Schema.execute (", "GraphQL: Strawberry + graphql-core (parse, validate, execute)"),
    ("GraphQLHTTP.", "our HTTP view (body, context, JSON response)"),
    ("bench/baseline.py", "the baseline's endpoint (body, key check, JSON response)"),
    ("AccessLog.", "middleware: access log, metrics, proxy headers, Starlette"),
    (
        "RequestResponseCycle.run_asgi (",
        "middleware: access log, metrics, proxy headers, Starlette",
    ),
    ("RequestResponseCycle.", "uvicorn HTTP protocol (httptools parse, write)"),
    ("HttpToolsProtocol.", "uvicorn HTTP protocol (httptools parse, write)"),
    ("Runner.run (", "event loop (uvloop, in C: polling, socket I/O, callbacks)"),
]
TRUNK_END = "Runner.run ("
# Functions whose total time the story needs, whatever their rank.
LANDMARKS = [
    "RequestResponseCycle.run_asgi",
    "AccessLog.__call__",
    "GraphQLHTTP.handle",
    "GraphQLHTTP._execute",
    "Schema.execute",
    "SchemaExtensionsRunner.operation",
    "Schema._parse_and_validate_async",
    "validate",
    "parse",
    "Schema._execute_operation",
    "Executor.execute_operation",
    "Executor.complete_value",
    "dispatch_batch",
    "SessionStore.get_many",
    "MessageStore.in_ranges",
    "_AsyncCursorBase.to_list",
    "decode_all",
    "PyMongoProtocol.write",
    "RequestResponseCycle.send",
    "HttpToolsProtocol.data_received",
    "KeyVerifier.verify",
    "Metrics.observe_operation",
]


def phase_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, phase in PHASES:
            if marker in frame:
                return phase
    return "other"


def py_spy_command() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit(PY_SPY_MISSING)
    return found


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw (folded) output: 'frame;frame;...;leaf count' lines, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def function_of(frame: str) -> str:
    """'name (file:line)' -> 'name (file)'."""
    name, _, where = frame.rpartition(" (")
    if not name:
        return frame
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({file})"


def file_of(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def layer_of(frame: str) -> str:
    file = file_of(frame)
    for part, layer in LAYERS:
        if part in file:
            return layer
    return "other"


def summarize(stacks: Counter[tuple[str, ...]], top: int) -> dict[str, Any]:
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    names: Counter[str] = Counter()
    children: dict[str, Counter[str]] = {}
    for stack, count in stacks.items():
        frames = [f for f in stack if " (" in f]  # leaves out "process ..."/"thread ..." labels
        if not frames:
            continue
        leaf = frames[-1]
        own[function_of(leaf)] += count
        lines[leaf] += count
        layers[layer_of(leaf)] += count
        phases[phase_of(frames)] += count
        functions = [function_of(f) for f in frames]
        for function in set(functions):
            inclusive[function] += count
        for name in {f.rpartition(" (")[0] for f in functions}:
            names[name] += count
        for parent, child in itertools.pairwise(functions):
            children.setdefault(parent, Counter())[child] += count

    # Left out of the total-time table: the frames every sample shares (runpy, cli,
    # uvicorn.run, asyncio.run), and pass-through frames (ASGI middleware, wrappers) that
    # spend almost nothing themselves and hand nearly all their time to one callee.
    def passes_through(name: str) -> bool:
        callees = children.get(name)
        if not callees or own[name] > 0.05 * inclusive[name]:
            return False
        return callees.most_common(1)[0][1] >= 0.9 * inclusive[name]

    ranked = Counter({k: v for k, v in inclusive.items() if v < total and not passes_through(k)})

    def rows(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": c, "percent": 100 * c / total}
            for name, c in counter.most_common(n)
        ]

    return {
        "samples": total,
        "top_own": [
            {**r, "total_percent": 100 * inclusive[r["function"]] / total} for r in rows(own, top)
        ],
        "top_total": [
            {**r, "own_percent": 100 * own[r["function"]] / total} for r in rows(ranked, top)
        ],
        "top_lines": rows(lines, top),
        "own_by_layer": rows(layers, len(layers)),
        "by_phase": rows(phases, len(phases)),
        "landmarks_total": [
            {"function": name, "samples": names[name], "percent": 100 * names[name] / total}
            for name in LANDMARKS
        ],
    }


def write_folded(stacks: Counter[tuple[str, ...]], path: Path) -> int:
    """Folded stacks, most frequent first, as many as fit: frames as "function (file)" for
    the first occurrence of a function and its bare name after, without line numbers and
    without the frames above the event loop (runpy, cli, uvicorn.run, asyncio.run)."""
    merged: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [function_of(f) for f in stack]
        start = next((i for i, f in enumerate(frames) if f.startswith(TRUNK_END)), 0)
        merged[";".join(_short(f) for f in frames[start:])] += count
    kept: list[str] = []
    size = 0
    left_out = 0
    for folded, count in merged.most_common():
        line = f"{folded} {count}\n"
        if size + len(line) > FOLDED_MAX_BYTES:
            left_out += count
            continue
        kept.append(line)
        size += len(line)
    if left_out:
        kept.append(f"(rarer stacks left out) {left_out}\n")
    path.write_text("".join(kept))
    return left_out


def _short(frame: str) -> str:
    """'Executor.execute_field (graphql/execution/executor.py)' -> 'Executor.execute_field'
    for well-known layers: the name says where it is."""
    name, _, where = frame.rpartition(" (")
    if name and where.startswith(SHORT_FILES):
        return name
    return frame


SHORT_FILES = ("graphql/", "strawberry/", "starlette/", "uvicorn/", "pymongo/", "asyncio/")


async def record(pid: int, rate: int, output: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        py_spy_command(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
        "--output", output, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--operation",
        choices=list(DOCUMENTS),
        default="SessionMessages",
        help="the operation loaded, as bench.http names it (SessionMessages)",
    )
    parser.add_argument(
        "--server",
        choices=("sessiongraph", "baseline"),
        default="sessiongraph",
        help="the server profiled: `sessiongraph serve`, or bench.http's bare baseline "
        "(bench/baseline.py) on the same data (sessiongraph)",
    )
    parser.add_argument("--duration", type=float, default=15, help="seconds per wrk run (15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (100)")
    parser.add_argument("--top", type=int, default=15, help="rows per table (15)")
    parser.add_argument("--sessions", type=int, default=100, help="sessions seeded (100)")
    parser.add_argument("--messages", type=int, default=20, help="messages per session (20)")
    parser.add_argument("--rotate", type=int, default=50, help="session ids SessionById cycles")
    args = parser.parse_args()
    wrk_command()
    py_spy_command()

    async with bench() as b, b.server(**NO_RATE_LIMIT) as graphql:
        ids = await seed(b, graphql.url, args.sessions, args.messages)
        async with AsyncExitStack() as stack:
            server = graphql
            if args.server == "baseline":
                server = await stack.enter_async_context(_baseline(b))
            plain, profiled, text, stderr = await _profiled(args, b, server, ids)
    if not text.strip():
        raise SystemExit(f"py-spy wrote no samples:\n{stderr}")

    stacks = parse_raw(text)
    summary = summarize(stacks, args.top)
    cpu_ms = profiled["server_cpu_ms_per_request"]
    for row in summary["own_by_layer"] + summary["by_phase"]:
        row["ms_per_request"] = row["percent"] / 100 * cpu_ms
    print(
        f"\n{args.server}, {args.operation}: without the profiler "
        f"{plain['requests_per_s']:.0f} req/s, "
        f"server CPU {plain['server_cpu_ms_per_request']:.2f} ms/req; sampled "
        f"{profiled['requests_per_s']:.0f} req/s, {cpu_ms:.2f} ms/req, "
        f"{summary['samples']} samples at {args.rate}/s"
    )
    print_table(
        f"top {args.top} functions by own time (% of samples)",
        ["own %", "total %", "function"],
        [[r["percent"], r["total_percent"], r["function"]] for r in summary["top_own"]],
    )
    print_table(
        f"top {args.top} functions by total time (% of samples; shared and pass-through "
        "frames left out)",
        ["total %", "own %", "function"],
        [[r["percent"], r["own_percent"], r["function"]] for r in summary["top_total"]],
    )
    print_table(
        "own time by layer",
        ["own %", "ms/req", "layer"],
        [[r["percent"], f"{r['ms_per_request']:.2f}", r["function"]]
         for r in summary["own_by_layer"]],
    )  # fmt: skip
    print_table(
        "by phase (the innermost of: PyMongo, DataLoader batch, GraphQL execution, HTTP view, "
        "middleware, HTTP protocol, event loop)",
        ["%", "ms/req", "phase"],
        [[r["percent"], f"{r['ms_per_request']:.2f}", r["function"]] for r in summary["by_phase"]],
    )
    print_table(
        "landmarks: total time (% of samples)",
        ["total %", "function"],
        [[r["percent"], r["function"]] for r in summary["landmarks_total"]],
    )
    print_table(
        f"top {args.top} source lines by own time",
        ["own %", "line"],
        [[r["percent"], r["function"]] for r in summary["top_lines"]],
    )
    RESULTS.mkdir(exist_ok=True)
    name = "profile" if args.server == "sessiongraph" else f"profile-{args.server}"
    folded = RESULTS / f"{name}.folded"
    left_out = write_folded(stacks, folded)
    tables = ("top_own", "top_total", "top_lines", "own_by_layer", "by_phase", "landmarks_total")
    for table in tables:
        for row in summary[table]:
            row["percent"] = round(row["percent"], 2)
            for key in ("total_percent", "own_percent", "ms_per_request"):
                if key in row:
                    row[key] = round(row[key], 3)
    path = write_result(
        name,
        {
            "settings": {
                "server": args.server,
                "operation": args.operation,
                "duration_s": args.duration,
                "connections": args.connections,
                "wrk_threads": 1,
                "py_spy": f"record --rate {args.rate} --format raw (idle threads left out)",
                "sessions": args.sessions,
                "messages_per_session": args.messages,
                "rate_limit_per_second": 0,
            },
            "without_profiler": _brief(plain),
            "while_sampled": _brief(profiled),
            **summary,
            "folded_stacks": {"file": folded.name, "samples_left_out": left_out},
        },
    )
    print(f"\nwritten to {path} and {folded}")


async def _profiled(
    args: argparse.Namespace, b: Bench, server: Server, ids: list[str]
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """The operation loaded on `server` without the profiler and while py-spy samples it:
    both loads' figures, py-spy's raw samples and its error output."""
    document = DOCUMENTS[args.operation]
    if "$id" in document:
        bodies = [_body(document, args.operation, id=i) for i in ids[: args.rotate]]
    else:
        bodies = [_body(document, args.operation, first=20)]
    headers = {"Authorization": f"Bearer {b.key}"}
    await wrk(server.url, bodies, headers, duration=2, connections=args.connections)
    plain = await load(b, server, bodies, duration=args.duration, connections=args.connections)
    with tempfile.NamedTemporaryFile(suffix=".txt", prefix="bench-py-spy-") as raw:
        spy = await record(server.pid, args.rate, raw.name)
        await asyncio.sleep(1)  # py-spy attaches
        if spy.returncode is not None:
            error = (await spy.communicate())[1].decode()
            raise SystemExit(f"py-spy could not sample the server:\n{error}")
        profiled = await load(
            b, server, bodies, duration=args.duration, connections=args.connections
        )
        spy.send_signal(signal.SIGINT)
        stderr = (await asyncio.wait_for(spy.communicate(), 60))[1].decode()
        text = await asyncio.to_thread(Path(raw.name).read_text)
    return plain, profiled, text, stderr


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request",
            "db_cpu_ms_per_request", "errors")  # fmt: skip
    return {k: round(result[k], 3) for k in keys if k in result}


if __name__ == "__main__":
    asyncio.run(main())
