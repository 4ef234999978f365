"""What the message-window tests share: messages of a chosen size, and the check that a
session's stored windows are what its messages make them (storage/message_windows.py)."""

from __future__ import annotations

from typing import Any

import bson
from pymongo import ASCENDING

from storage import Database, NewMessage
from storage.database import to_list
from storage.message_windows import WINDOW_BYTES, WINDOW_MESSAGES, stored_windows


def sized_message(content_size: int, n: int) -> NewMessage:
    """A user message of about `content_size` characters, told apart by `n`."""
    return {"role": "user", "fields": {"content": f"{n}:" + "x" * content_size}}


def longest_fitting(docs: list[dict[str, Any]]) -> int:
    """How many of `docs`, from the first, fit a window's count and byte limits."""
    total = 0
    for taken, doc in enumerate(docs):
        total += len(bson.encode(doc))
        if taken + 1 > WINDOW_MESSAGES or total > WINDOW_BYTES:
            return taken
    return len(docs)


async def windows_agree(db: Database, session_id: str) -> dict[str, Any]:
    """Assert that the stored windows of `session_id` hold the stored messages they cover,
    as many as the limits allow (the head from seq 1; the tail up to the count, once the
    head does not hold them all); the session's document."""
    doc: dict[str, Any] | None = await db.sessions.find_one({"_id": session_id})
    assert doc is not None
    stored = await to_list(db.messages.find({"session_id": session_id}).sort("seq", ASCENDING))
    count = doc["message_count"]
    assert [m["seq"] for m in stored] == list(range(1, count + 1))
    head, tail = stored_windows(doc, db.messages.codec_options)
    in_head = longest_fitting(stored)
    assert head == stored[:in_head]
    in_tail = 0 if in_head == count else longest_fitting(stored[::-1])
    assert tail == (stored[count - in_tail :] if in_tail else [])
    return doc
