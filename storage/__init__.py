"""Everything that talks to MongoDB. No other package imports the driver."""

from storage.api_keys import ApiKeyRecord, ApiKeyStore
from storage.database import Database, is_database_unavailable
from storage.errors import (
    ApiKeyNotFound,
    CursorExpired,
    IdempotencyKeyPending,
    IdempotencyKeyReused,
    SessionClosed,
    SessionNotFound,
    SessionScopeExceeded,
    StorageError,
)
from storage.messages import MessageStore
from storage.records import (
    MessageRecord,
    NewMessage,
    NewSession,
    Page,
    SessionChanges,
    SessionPosition,
    SessionQuery,
    SessionRecord,
    TimeRange,
)
from storage.sessions import SessionStore

__all__ = [
    "ApiKeyNotFound",
    "ApiKeyRecord",
    "ApiKeyStore",
    "CursorExpired",
    "Database",
    "IdempotencyKeyPending",
    "IdempotencyKeyReused",
    "MessageRecord",
    "MessageStore",
    "NewMessage",
    "NewSession",
    "Page",
    "SessionChanges",
    "SessionClosed",
    "SessionNotFound",
    "SessionPosition",
    "SessionQuery",
    "SessionRecord",
    "SessionScopeExceeded",
    "SessionStore",
    "StorageError",
    "TimeRange",
    "is_database_unavailable",
]
