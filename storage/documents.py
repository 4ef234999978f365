"""Stored documents and the records they map to: `_id` becomes `id` here and nowhere else."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from bson.codec_options import CodecOptions

from storage.clock import utc_now
from storage.message_windows import WITHOUT_WINDOWS, drop_windows, take_windows
from storage.records import MessageRecord, NewMessage, SessionRecord

# Secrets are stored apart from the public phone-number fields and never read back.
PUBLIC_FIELDS = {"phone_number_secrets": 0}
SESSION_FIELDS = {**PUBLIC_FIELDS, **WITHOUT_WINDOWS}
"""A session's fields as most reads want them: no secrets, no message windows."""


def session_from_document(
    doc: dict[str, Any],
    now: datetime | None = None,
    *,
    windows: CodecOptions[dict[str, Any]] | None = None,
) -> SessionRecord:
    """Map a stored document to a record; a session past its expiry reads as completed.
    The message windows are left out, or, given the codec options to decode them with,
    kept as the record's `message_windows` (for the pages of its messages they hold)."""
    found = None if windows is None else take_windows(doc, windows)
    drop_windows(doc)
    if found is not None:
        doc["message_windows"] = found
    doc["id"] = doc.pop("_id")
    if doc["status"] == "active" and doc["expires_at"] <= (now or utc_now()):
        doc["status"] = "completed"
    return doc  # type: ignore[return-value]


def message_documents(
    org_id: str, session_id: str, first_seq: int, messages: list[NewMessage], now: datetime
) -> list[dict[str, Any]]:
    """The documents to insert for `messages`, numbered from `first_seq` in order."""
    return [
        {
            "_id": str(uuid.uuid4()),
            "session_id": session_id,
            "org_id": org_id,
            "seq": first_seq + offset,
            "role": message["role"],
            **message["fields"],
            "created_at": now,
        }
        for offset, message in enumerate(messages)
    ]


def message_from_document(doc: dict[str, Any]) -> MessageRecord:
    """Map a stored message document to a record."""
    record = dict(doc)
    record["id"] = record.pop("_id")
    return record  # type: ignore[return-value]
