"""`sessiongraph operations add|list|remove`: the trusted documents an operator registers
from `.graphql` files or the JSON manifests GraphQL Codegen's client preset and Relay emit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLSyntaxError, OperationDefinitionNode, parse

from sessiongraph.settings import Settings
from storage import Database
from storage.persisted import DOCUMENT_ID, MAX_DOCUMENT_BYTES, PersistedDocumentStore, document_id

MAX_MANIFEST_BYTES = 8 * 1024 * 1024
"""The largest file `operations add` reads."""

OpenDatabase = Callable[[Settings], AbstractAsyncContextManager[Database]]


class RefusedFile(Exception):
    """A file that cannot be trusted as given; nothing of the command's files is stored."""


def documents_of(path: Path) -> dict[str, str]:
    """The documents in a file, by id: a JSON manifest `{hash: document}` (hashes with or
    without `sha256:`, each checked against its document) or one document's exact text."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise RefusedFile(f"{path}: {error.strerror}") from None
    if size > MAX_MANIFEST_BYTES:
        raise RefusedFile(f"{path}: {size} bytes, more than the {MAX_MANIFEST_BYTES} accepted")
    raw = path.read_bytes()
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        raise RefusedFile(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    if path.suffix.lower() != ".json":
        return {document_id(text): _checked_document(path, "the file", text)}
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise RefusedFile(f"{path}: not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or not manifest:
        raise RefusedFile(f"{path}: a manifest is a non-empty JSON object {{hash: document}}")
    documents = {}
    for key, value in manifest.items():
        if not isinstance(value, str):
            raise RefusedFile(f"{path}: the document of {key!r} is not a string")
        id_ = key if key.startswith("sha256:") else "sha256:" + key
        if not DOCUMENT_ID.match(id_):
            raise RefusedFile(
                f"{path}: key {key!r} is not a SHA-256 hash (64 lowercase hexadecimal digits)"
            )
        if document_id(value) != id_:
            raise RefusedFile(
                f"{path}: key {key!r} is not the SHA-256 of its document, which hashes to "
                f"{document_id(value).removeprefix('sha256:')}"
            )
        documents[id_] = _checked_document(path, f"the document of {key!r}", value)
    return documents


def _checked_document(path: Path, what: str, text: str) -> str:
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise RefusedFile(f"{path}: {what} is longer than {MAX_DOCUMENT_BYTES} bytes")
    try:
        parse(text)
    except GraphQLSyntaxError as error:
        raise RefusedFile(f"{path}: {what} is not a GraphQL document: {error.message}") from None
    return text


def operation_names(text: str) -> str:
    """The names of a document's operations, for listings."""
    try:
        definitions = parse(text).definitions
    except GraphQLSyntaxError:
        return "?"
    names = [
        f"{d.operation.value} {d.name.value if d.name else '(anonymous)'}"
        for d in definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    return ", ".join(names)


async def add(settings: Settings, args: argparse.Namespace, database: OpenDatabase) -> int:
    documents: dict[str, str] = {}
    try:
        for path in args.files:
            documents.update(documents_of(Path(path)))
    except RefusedFile as error:
        print(f"Refused, nothing was added: {error}.", file=sys.stderr)
        return 1
    async with database(settings) as db:
        new = await PersistedDocumentStore(db).add_trusted(documents)
    print(f"Trusted {len(documents)} documents ({new} new):")
    for id_, text in documents.items():
        print(f"{id_}  {operation_names(text)}")
    return 0


async def listing(settings: Settings, args: argparse.Namespace, database: OpenDatabase) -> int:
    async with database(settings) as db:
        records = await PersistedDocumentStore(db).list_trusted()
    if not records:
        print("No trusted documents.")
    for record in records:
        print(f"{record['id']}  {record['created_at']:%Y-%m-%d %H:%M}  "
              f"{operation_names(record['document'])}")  # fmt: skip
    return 0


async def remove(settings: Settings, args: argparse.Namespace, database: OpenDatabase) -> int:
    if not DOCUMENT_ID.match(args.id):
        print(f"{args.id!r}: a document id is 'sha256:' and 64 lowercase hexadecimal digits.",
              file=sys.stderr)  # fmt: skip
        return 2
    async with database(settings) as db:
        removed = await PersistedDocumentStore(db).remove_trusted(args.id)
    if not removed:
        print(f"No trusted document {args.id}.", file=sys.stderr)
        return 1
    print(f"Removed trusted document {args.id}.")
    return 0


def add_commands(commands: Any, database: OpenDatabase) -> None:
    """The `operations` command and its subcommands, on the CLI's subparsers."""

    def bound(run: Callable[..., Any]) -> Callable[[Settings, argparse.Namespace], Any]:
        return lambda settings, args: run(settings, args, database)

    operations = commands.add_parser("operations", help="Manage trusted documents.")
    sub = operations.add_subparsers(dest="operations_command", required=True)
    adding = sub.add_parser(
        "add",
        help="Trust .graphql files (each one document, its id the SHA-256 of its exact text) "
        "or JSON manifests {hash: document}; all or nothing.",
    )
    adding.add_argument("files", nargs="+", metavar="FILE")
    adding.set_defaults(run=bound(add))
    sub.add_parser("list", help="List the trusted documents.").set_defaults(run=bound(listing))
    removing = sub.add_parser("remove", help="Stop trusting a document.")
    removing.add_argument("id", help="The document id (sha256:...), as `operations list` shows.")
    removing.set_defaults(run=bound(remove))
