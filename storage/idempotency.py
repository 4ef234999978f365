"""Idempotency records: which request a key stands for, so that a retry returns what it stored.

Every keyed write (`addMessages`, `createSession`) keeps one document in `idempotency_keys`:
its `_id` names the organization, the session or operation and the key, `digest` is the
SHA-256 of the request, and `created_at` expires it with the collection's TTL index
(`IDEMPOTENCY_TTL_SECONDS`). The `_id`'s uniqueness is what keeps two concurrent requests
with one key from both writing. A record with a `session_id` is removed with that session.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def request_digest(request: Any) -> str:
    """The SHA-256 of a request's content, the same for equal content in any key order."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


def append_record_id(org_id: str, session_id: str, key: str) -> str:
    """The record of an append to one session with `key`."""
    return f"{org_id}:{session_id}:{key}"


def create_record_id(org_id: str, key: str) -> dict[str, str]:
    """The record of a session created with `key`: a document, so that it can never equal an
    append's string id, whatever characters the organization, session and keys hold."""
    return {"org_id": org_id, "create_session": key}
