"""What the storage tests hand the stores: a new session and a new message."""

from __future__ import annotations

from typing import Any

from storage import NewMessage, NewSession


def new_session(**changes: Any) -> NewSession:
    """A new active session with nothing optional set, but for `changes`."""
    session: NewSession = {
        "name": None,
        "status": "active",
        "expiration_seconds": 3600,
        "assistant_id": None,
        "assistant": None,
        "customer": None,
        "phone_number_id": None,
        "phone_number": None,
        "phone_number_secrets": None,
    }
    return {**session, **changes}  # type: ignore[typeddict-item]


def text(content: str) -> NewMessage:
    """A user message saying `content`."""
    return {"role": "user", "fields": {"content": content}}
