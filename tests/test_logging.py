"""Logs: one line per request with its request id; JSON lines when asked for."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

import httpx
import pytest

from sessiongraph.embedded import free_port
from sessiongraph.log_config import JsonFormatter
from sessiongraph.settings import Settings
from tests.command_line import SESSIONGRAPH

START_SECONDS = 30.0


def test_the_json_formatter_writes_one_object_with_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "sessiongraph.access", "levelname": "INFO", "msg": "GET %s", "args": ("/x",)}
    )
    record.request_id = "abc"

    line = JsonFormatter().format(record)

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "GET /x"
    assert entry["request_id"] == "abc"
    assert entry["logger"] == "sessiongraph.access"
    assert entry["time"].endswith("+00:00")


async def test_each_request_is_logged_with_its_request_id(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sessiongraph.access"):
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{server}/graphql", json={"query": "{ __typename }"})

    request_id = response.headers["x-request-id"]
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(lines) == 1
    assert lines[0].__dict__["status"] == 401
    assert lines[0].__dict__["path"] == "/graphql"


async def serve_and_get(
    mongo_uri: str, settings: Settings, log_format: str, headers: dict[str, str]
) -> tuple[httpx.Response, str]:
    """Run `sessiongraph serve` with `log_format`, GET /healthz once; the answer and all the
    server wrote."""
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "SESSIONGRAPH_DB_NAME": settings.db_name,
        "SESSIONGRAPH_LOG_FORMAT": log_format,
    }
    process = await asyncio.create_subprocess_exec(
        str(SESSIONGRAPH), "serve", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(int(START_SECONDS / 0.1)):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz", headers=headers)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the server did not start")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    return response, output.decode()


async def test_serve_writes_json_lines_when_asked(mongo_uri: str, settings: Settings) -> None:
    response, output = await serve_and_get(mongo_uri, settings, "json", {})

    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [e for e in entries if e["logger"] == "sessiongraph.access"]
    assert response.status_code == 200
    assert [(e["path"], e["status"]) for e in access] == [("/healthz", 200)]
    assert all({"time", "level", "message"} <= e.keys() for e in entries)
    # Only the project's access line: uvicorn's own would repeat the request.
    assert [e["logger"] for e in entries if "/healthz" in e["message"]] == ["sessiongraph.access"]


async def test_serve_logs_each_request_once_as_text_with_its_request_id(
    mongo_uri: str, settings: Settings
) -> None:
    response, output = await serve_and_get(
        mongo_uri, settings, "text", {"X-Request-ID": "text-log-1"}
    )

    assert response.status_code == 200
    lines = [line for line in output.splitlines() if "/healthz" in line]
    assert len(lines) == 1, lines
    assert "GET /healthz 200" in lines[0]
    assert "request text-log-1" in lines[0]


async def test_every_response_carries_a_request_id(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "probe-7"})
        generated = await client.get("/readyz")
        malformed = await client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})

    assert given.headers["x-request-id"] == "probe-7"
    assert len(generated.headers["x-request-id"]) == 32
    assert malformed.headers["x-request-id"] != "no spaces allowed"
