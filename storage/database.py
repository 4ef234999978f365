"""The MongoDB connection: client, collections, indexes and transactions.

Both PyMongo's `AsyncMongoClient` (the default) and Motor are supported. Their APIs agree
on everything this package uses except `aggregate`, `watch` and `start_session`, which are
coroutines in PyMongo and plain calls in Motor; the small functions below hide that.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.write_concern import WriteConcern

log = logging.getLogger(__name__)

T = TypeVar("T")
Driver = Literal["pymongo", "motor"]

# Acknowledged means kept: an acknowledged write is journaled on a majority.
DURABLE = WriteConcern(w="majority", j=True)

SESSION_INDEXES = [
    IndexModel([("org_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)]),
    IndexModel([("org_id", ASCENDING), ("name", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("assistant_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("phone_number_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("customer.number", ASCENDING), ("created_at", DESCENDING)]),
]
MESSAGE_INDEXES = [
    IndexModel([("session_id", ASCENDING), ("seq", ASCENDING)], unique=True),
]
API_KEY_INDEXES = [
    IndexModel([("key_hash", ASCENDING)], unique=True),
    IndexModel([("org_id", ASCENDING), ("created_at", ASCENDING)]),
]
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
IDEMPOTENCY_INDEXES = [
    IndexModel([("created_at", ASCENDING)], expireAfterSeconds=IDEMPOTENCY_TTL_SECONDS),
]


def is_database_unavailable(error: BaseException) -> bool:
    """True when `error` means the database could not be reached, not that a command failed."""
    return isinstance(
        error, ServerSelectionTimeoutError | ConnectionFailure | AutoReconnect | NetworkTimeout
    )


def is_database_error(error: BaseException) -> bool:
    """True for any error raised by the driver."""
    return isinstance(error, PyMongoError)


async def to_list(cursor_or_awaitable: Any) -> list[dict[str, Any]]:
    """Drain a cursor that PyMongo returns from a coroutine and Motor returns directly."""
    cursor = cursor_or_awaitable
    if inspect.isawaitable(cursor):
        cursor = await cursor
    result: list[dict[str, Any]] = await cursor.to_list(None)
    return result


class Database:
    """One MongoDB client and the collections of one database, all writing durably."""

    def __init__(self, client: Any, db_name: str, *, supports_transactions: bool) -> None:
        self.client = client
        self.db = client.get_database(db_name, write_concern=DURABLE)
        self.supports_transactions = supports_transactions
        self.sessions = self.db["sessions"]
        self.messages = self.db["messages"]
        self.api_keys = self.db["api_keys"]
        self.idempotency = self.db["idempotency_keys"]

    @classmethod
    async def connect(
        cls, uri: str, db_name: str, *, driver: Driver = "pymongo", timeout_ms: int = 5000
    ) -> Database:
        """Open a client and learn whether the deployment can run transactions."""
        options: dict[str, Any] = {
            "tz_aware": True,
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": timeout_ms,
            "uuidRepresentation": "standard",
            "appname": "sessiongraph",
        }
        client: Any
        if driver == "motor":
            from motor.motor_asyncio import AsyncIOMotorClient

            client = AsyncIOMotorClient(uri, **options)
        else:
            client = AsyncMongoClient(uri, **options)
        try:
            hello = await client.admin.command("hello")
        except BaseException:
            await close_client(client)
            raise
        # Transactions need a replica set or a sharded cluster; a standalone server has neither.
        transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
        if not transactions:
            log.warning(
                "MongoDB at %s is a standalone server: appends and deletes run without "
                "transactions, so a crash mid-append can leave a gap in a transcript.",
                _redact(uri),
            )
        return cls(client, db_name, supports_transactions=transactions)

    async def ensure_indexes(self) -> None:
        """Create every index the queries rely on; a no-op when they exist."""
        await self.sessions.create_indexes(SESSION_INDEXES)
        await self.messages.create_indexes(MESSAGE_INDEXES)
        await self.api_keys.create_indexes(API_KEY_INDEXES)
        await self.idempotency.create_indexes(IDEMPOTENCY_INDEXES)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.client.admin.command("ping")

    async def in_transaction(self, callback: Callable[[Any], Awaitable[T]]) -> T:
        """Run `callback(session)` in a transaction, retried on transient errors.

        On a deployment without transactions the callback runs once with `session=None`.
        """
        if not self.supports_transactions:
            return await callback(None)
        session = self.client.start_session()
        if inspect.isawaitable(session):
            session = await session
        async with session:
            result: T = await session.with_transaction(callback, write_concern=DURABLE)
            return result

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await close_client(self.client)


async def close_client(client: Any) -> None:
    closing = client.close()
    if inspect.isawaitable(closing):
        await closing


def _redact(uri: str) -> str:
    if "@" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
