"""The `sessiongraph` command: serve, manage API keys and trusted documents, export the
schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic import ValidationError

from sessiongraph.database import open_database
from sessiongraph.embedded import EmbeddedDatabaseError
from sessiongraph.log_config import log_config
from sessiongraph.operations import add_commands as add_operations_commands
from sessiongraph.settings import Settings
from storage import ApiKeyNotFound, ApiKeyStore, Database, NewMessage, NewSession, SessionStore

ORG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _org(value: str) -> str:
    if not ORG_ID.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: an organization id is 1 to 64 letters, digits, '_', '.' or '-'"
        )
    return value


def _database(settings: Settings) -> AbstractAsyncContextManager[Database]:
    """The configured database for a command; the embedded one is reused if a server runs
    it, else started briefly."""
    return open_database(settings, share_running=True)


async def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as db:
        record, key = await ApiKeyStore(db).create(args.org, args.name)
    print(f"Created key {record['id']} for organization {record['org_id']!r}.")
    print("Keep it safe: it is shown only now. The key:")
    print(key)
    return 0


async def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as db:
        records = await ApiKeyStore(db).list(args.org)
    if not records:
        print(f"No keys for organization {args.org!r}.")
    for r in records:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        created = f"{r['created_at']:%Y-%m-%d %H:%M}"
        print(f"{r['id']}  {r['prefix']}…  {created}  {state}  {r['name'] or ''}")
    return 0


async def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as db:
        try:
            record = await ApiKeyStore(db).revoke(args.id)
        except ApiKeyNotFound as error:
            print(error, file=sys.stderr)
            return 1
    print(f"Revoked key {record['id']} of organization {record['org_id']!r}.")
    return 0


DEMO_SESSIONS = [
    ("Order status", [("user", "Where is my order 7?"), ("assistant", "It shipped today.")]),
    ("Billing question", [("user", "Why was I charged twice?"), ("assistant", "Let me check.")]),
    ("Appointment", [("user", "Can I move my booking to Friday?")]),
]


async def _seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    async with _database(settings) as db:
        record, key = await ApiKeyStore(db).create(args.org, "demo")
        sessions = SessionStore(db)
        for name, lines in DEMO_SESSIONS:
            new: NewSession = {
                "name": name,
                "status": "active",
                "expiration_seconds": 86_400,
                "assistant_id": None,
                "assistant": {"name": "Ava", "model": {"provider": "openai", "model": "gpt-4o"}},
                "customer": {"number": "+14155550123", "name": "Demo customer"},
                "phone_number_id": None,
                "phone_number": None,
                "phone_number_secrets": None,
            }
            messages: list[NewMessage] = [
                {"role": role, "fields": {"content": text}}  # type: ignore[typeddict-item]
                for role, text in lines
            ]
            await sessions.create(args.org, new, messages)
    print(f"Seeded {len(DEMO_SESSIONS)} sessions for organization {args.org!r}.")
    print(f"Key {record['id']}, shown only now. The key:")
    print(key)
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    # The app factory reads settings from the environment, in every worker.
    os.environ["SESSIONGRAPH_HOST"] = args.host or settings.host
    os.environ["SESSIONGRAPH_PORT"] = str(args.port or settings.port)
    if args.workers > 1 and settings.embedded:
        print(
            "--workers above 1 needs MONGODB_URI: the embedded database serves one process.",
            file=sys.stderr,
        )
        return 2
    options: dict[str, Any] = {
        "host": os.environ["SESSIONGRAPH_HOST"],
        "port": int(os.environ["SESSIONGRAPH_PORT"]),
        "log_level": settings.log_level.lower(),
        "log_config": log_config(settings.log_level, settings.log_format),
        # One line per request: sessiongraph.access, with the request id and duration.
        "access_log": False,
        "ws_per_message_deflate": False,
        # Then websockets are closed with 1012 and requests cancelled: a stop never hangs.
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }
    if args.workers > 1:
        # uvicorn's own workers: SSE streams end at the graceful timeout, not at once.
        uvicorn.run("sessiongraph.app:create_app", factory=True, workers=args.workers, **options)
        return 0
    from sessiongraph.app import create_app
    from sessiongraph.server import Server

    app = create_app()
    Server(uvicorn.Config(app, **options), app.state.parts.live).run()
    return 0


def _export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema import schema_sdl

    sys.stdout.write(schema_sdl())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessiongraph", description="GraphQL API for conversation sessions."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the server.")
    serve.add_argument("--host", help="Interface to listen on (default SESSIONGRAPH_HOST).")
    serve.add_argument("--port", type=int, help="Port to listen on (default SESSIONGRAPH_PORT).")
    serve.add_argument("--workers", type=int, default=1, help="Worker processes (default 1).")
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="Manage API keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="Create a key; prints it on the last line.")
    create.add_argument("--org", required=True, type=_org, help="The organization it belongs to.")
    create.add_argument("--name", help="A label for the key.")
    create.set_defaults(run=_keys_create)
    listing = key_commands.add_parser("list", help="List an organization's keys.")
    listing.add_argument("--org", required=True, type=_org, help="The organization.")
    listing.set_defaults(run=_keys_list)
    revoke = key_commands.add_parser("revoke", help="Revoke a key by id.")
    revoke.add_argument("id", help="The key id (key_...), as `keys list` shows.")
    revoke.set_defaults(run=_keys_revoke)

    seed = commands.add_parser(
        "seed-demo", help="Create a demo organization, a key and a few sessions with messages."
    )
    seed.add_argument("--org", default="demo", type=_org, help="The organization (demo).")
    seed.set_defaults(run=_seed_demo)

    add_operations_commands(commands, _database)

    export = commands.add_parser("export-schema", help="Print the schema in GraphQL SDL.")
    export.set_defaults(run=_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sessiongraph` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"Invalid configuration:\n{error}", file=sys.stderr)
        return 2
    run: Callable[[Settings, argparse.Namespace], int | Awaitable[int]] = args.run
    try:
        outcome = run(settings, args)
        if not isinstance(outcome, int):
            outcome = asyncio.run(outcome)  # type: ignore[arg-type]
    except EmbeddedDatabaseError as error:
        print(error, file=sys.stderr)
        return 1
    return outcome


if __name__ == "__main__":
    sys.exit(main())
