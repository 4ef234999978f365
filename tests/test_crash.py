"""The database crashes under load (SIGKILL): every acknowledged message survives, in
order, in whole batches. See tests/faults.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.factories import create_session
from tests.faults import (
    FAULT_TIMEOUT_MS,
    answered_within,
    append,
    transcript,
)
from tests.keys import new_org_key
from tests.serving import serving

# The database crashes under load.

CRASH_SESSIONS = 3
WRITERS_PER_SESSION = 2
ACKNOWLEDGED_BEFORE_THE_CRASH = 60
"""How many messages' appends have been acknowledged when the database is killed."""


@dataclass
class Writer:
    """Appends batches of 1 to 3 messages to one session until an append fails. Each
    message says which writer and batch it belongs to: "<writer>:<batch>:<part>/<size>"."""

    name: str
    session_id: str
    acknowledged: dict[int, str]
    """seq -> content of every message whose append the API acknowledged."""
    waiting: bool = False
    """Whether an append was sent and not answered yet."""

    async def run(self, api: ApiClient, on_acknowledged: Callable[[], None]) -> None:
        batch = 0
        while True:
            batch += 1
            size = 1 + batch % 3
            contents = [f"{self.name}:{batch}:{part}/{size}" for part in range(1, size + 1)]
            self.waiting = True
            body = await append(api, self.session_id, *contents)
            self.waiting = False
            if body.get("errors"):
                return
            for message in body["data"]["addMessages"]:
                self.acknowledged[message["seq"]] = message["content"]
            on_acknowledged()


async def crash_under_load(
    api: ApiClient, session_ids: list[str], database: EmbeddedDatabase
) -> tuple[list[Writer], int]:
    """Kill the database (SIGKILL) while writers append to `session_ids`, once enough
    appends were acknowledged; return the writers, once each has failed, and how many
    were waiting for an answer at the crash."""
    writers = [
        Writer(f"{session_id}-{n}", session_id, {})
        for session_id in session_ids
        for n in range(WRITERS_PER_SESSION)
    ]
    enough = asyncio.Event()

    def count() -> None:
        if sum(len(writer.acknowledged) for writer in writers) >= ACKNOWLEDGED_BEFORE_THE_CRASH:
            enough.set()

    tasks = [asyncio.create_task(writer.run(api, count)) for writer in writers]
    try:
        async with answered_within():
            await enough.wait()
        database.kill()
        waiting = sum(writer.waiting for writer in writers)
        async with answered_within():
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return writers, waiting


def assert_whole_batches(messages: list[tuple[int, str]]) -> None:
    """Every batch in `messages` is there entirely, its parts in order on consecutive seqs."""
    batches: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for seq, content in messages:
        writer, batch, parts = content.split(":")
        part, of = parts.split("/")
        batches.setdefault((writer, batch), []).append((seq, int(part), int(of)))
    for (writer, batch), stored in batches.items():
        first_seq, _, size = stored[0]
        whole = [(first_seq + part - 1, part, size) for part in range(1, size + 1)]
        assert stored == whole, f"batch {batch} of {writer} is partial: {stored}"


async def test_every_acknowledged_message_survives_a_database_crash(
    settings: Settings, tmp_path: Path
) -> None:
    # SecantusDB ignores a transaction's j:true unless told to sync every commit; without
    # this, a SIGKILL loses the last acknowledged appends now and then.
    database = EmbeddedDatabase(data_dir=tmp_path / "secantus", extra_args=("--sync-on-commit",))
    await database.start_async()
    try:
        db = await Database.connect(database.uri, settings.db_name)
        try:
            _, key = await new_org_key(db)
        finally:
            await db.close()
        changes = {"mongodb_uri": database.uri, "db_timeout_ms": FAULT_TIMEOUT_MS}
        async with serving(settings, **changes) as (url, _), ApiClient(url, key) as api:
            session_ids = [await create_session(api) for _ in range(CRASH_SESSIONS)]
            writers, waiting_at_the_crash = await crash_under_load(api, session_ids, database)
        assert waiting_at_the_crash > 0

        await database.start_async()
        async with serving(settings, **changes) as (url, _), ApiClient(url, key) as api:
            for session_id in session_ids:
                stored = await transcript(api, session_id)
                stored.assert_consistent()
                assert_whole_batches(stored.messages)
                acknowledged = {
                    seq: content
                    for writer in writers
                    if writer.session_id == session_id
                    for seq, content in writer.acknowledged.items()
                }
                lost = acknowledged.items() - set(stored.messages)
                assert not lost, f"acknowledged, then lost in the crash: {sorted(lost)}"
    finally:
        await database.stop_async()
