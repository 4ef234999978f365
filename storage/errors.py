"""Errors the storage layer raises; the GraphQL layer maps each to a stable error code."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised on purpose by `storage/`."""


class SessionNotFound(StorageError):
    """No session with this id exists in the caller's organization."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"No session with id {session_id!r}.")
        self.session_id = session_id


class SessionClosed(StorageError):
    """The session is completed or expired, so it takes no more messages."""

    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(f"Session {session_id!r} is {reason}; it takes no more messages.")
        self.session_id = session_id
        self.reason = reason


class IdempotencyKeyReused(StorageError):
    """An idempotency key came back with a different batch of messages."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotencyKey {key!r} was already used for a different batch of messages "
            "on this session."
        )
        self.key = key


class ApiKeyNotFound(StorageError):
    """No API key with this id exists."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id {key_id!r}.")
        self.key_id = key_id


class CursorExpired(StorageError):
    """The cursor lies before what the event log still holds."""

    def __init__(self, cursor: str, retention_seconds: int) -> None:
        super().__init__(
            f"Cursor {cursor!r} is older than the event log keeps ({retention_seconds} s) "
            "or before a gap in it; subscribe without `after` and reload the sessions."
        )
        self.cursor = cursor
