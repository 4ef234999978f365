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
    """An idempotency key came back with a different request: another batch of messages for
    one session, or another input for `createSession`."""

    def __init__(
        self, key: str, used_for: str = "a different batch of messages on this session"
    ) -> None:
        super().__init__(f"idempotencyKey {key!r} was already used for {used_for}.")
        self.key = key


class IdempotencyKeyPending(StorageError):
    """The request that first used an idempotency key has not finished storing its result
    (seen only on a database without transactions, whose writes land one at a time)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotencyKey {key!r} belongs to a request that is still being stored; "
            "retry shortly with the same key."
        )
        self.key = key


class ApiKeyNotFound(StorageError):
    """No API key with this id exists."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key with id {key_id!r}.")
        self.key_id = key_id


class SessionScopeExceeded(StorageError):
    """A caller limited to particular sessions asked to create another."""

    def __init__(self) -> None:
        super().__init__(
            "This access token is limited to particular sessions, so it cannot create "
            "sessions; mint one without sessionIds, or use the API key."
        )


class CursorExpired(StorageError):
    """The cursor lies before what the event log still holds."""

    def __init__(self, cursor: str, retention_seconds: int) -> None:
        super().__init__(
            f"Cursor {cursor!r} is older than the event log keeps ({retention_seconds} s) "
            "or before a gap in it; subscribe without `after` and reload the sessions."
        )
        self.cursor = cursor
