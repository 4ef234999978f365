"""The MongoDB connection: client, collections, indexes and transactions.

Both PyMongo's `AsyncMongoClient` (the default) and Motor (installed with the `motor` extra)
are supported. Their APIs agree on everything this package uses except `aggregate`, `watch`
and `start_session`, which are coroutines in PyMongo and plain calls in Motor; the small
functions below hide that.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.write_concern import WriteConcern

log = logging.getLogger(__name__)

T = TypeVar("T")
Driver = Literal["pymongo", "motor"]
Planner = Literal["full", "simple"]
"""How much of a query the server's planner serves from an index (see docs/performance.md).

"full" (MongoDB): each `$or` branch, a compound sort and a limit, from compound indexes.
"simple" (SecantusDB, the embedded database): a filter without `$or`/`$and`, pinning an index
prefix by equality plus at most one range on the next key; every candidate is read, then
sorted and limited, so a query costs what its index range holds, not what it returns.
"""

# Acknowledged means kept: an acknowledged write is journaled on a majority.
DURABLE = WriteConcern(w="majority", j=True)

MOTOR_MISSING = (
    "SESSIONGRAPH_DRIVER=motor needs Motor, which is not installed: install "
    "'sessiongraph[motor]' (pip install 'sessiongraph[motor]'), or use the default driver, "
    "pymongo. Motor reached end of life on 2026-05-14."
)

DEFAULT_TIMEOUT_MS = 5000
# The driver's labels for "this may well succeed if tried again" (the transactions spec).
TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"
UNKNOWN_COMMIT_RESULT = "UnknownTransactionCommitResult"
MAX_TIME_MS_EXPIRED = 50
RETRY_BACKOFF_SECONDS = (0.005, 0.5)
ABANDON_SECONDS = 1.0
"""How long aborting or killing an abandoned transaction may take."""

SESSION_INDEXES = [
    IndexModel([("org_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("updated_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)]),
    # A status's pages in time windows on the embedded database (`SessionStore._scan`).
    IndexModel(
        [
            ("org_id", ASCENDING),
            ("status", ASCENDING),
            ("created_at", DESCENDING),
            ("_id", DESCENDING),
        ]
    ),
    IndexModel([("org_id", ASCENDING), ("name", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("assistant_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("phone_number_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("org_id", ASCENDING), ("customer.number", ASCENDING), ("created_at", DESCENDING)]),
    # The expiry sweep's, across organizations (storage/session_events.py).
    IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
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
    # A deleted session's keys go with it (`SessionStore.delete`), read by this index rather
    # than by a scan of a day's keys.
    IndexModel([("session_id", ASCENDING), ("org_id", ASCENDING)]),
]
REGISTERED_DOCUMENT_INDEXES = [
    IndexModel([("org_id", ASCENDING)]),
    IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
]
DELETED_SESSION_TTL_SECONDS = 24 * 3600
DELETED_SESSION_INDEXES = [
    IndexModel([("deleted_at", ASCENDING)], expireAfterSeconds=DELETED_SESSION_TTL_SECONDS),
]


def is_database_unavailable(error: BaseException) -> bool:
    """True when `error` means the database could not be reached or could not finish in
    time (a transaction still conflicting, or its commit unconfirmed, once retries ran
    out), not that a command was refused: trying again shortly may succeed."""
    if isinstance(
        error, ServerSelectionTimeoutError | ConnectionFailure | AutoReconnect | NetworkTimeout
    ):
        return True
    return isinstance(error, PyMongoError) and (
        error.has_error_label(TRANSIENT_TRANSACTION_ERROR)
        or error.has_error_label(UNKNOWN_COMMIT_RESULT)
    )


def check_driver(driver: Driver) -> None:
    """Raise `ImportError` naming the extra to install when `driver` is not installed."""
    if driver == "motor":
        try:
            import motor.motor_asyncio  # noqa: F401
        except ImportError:
            raise ImportError(MOTOR_MISSING) from None


def planner_of(build_info: dict[str, Any]) -> Planner:
    """The planner of the server that answered `buildInfo` with `build_info`."""
    return "simple" if "secantusVersion" in build_info else "full"


async def to_list(cursor_or_awaitable: Any) -> list[dict[str, Any]]:
    """Drain a cursor that PyMongo returns from a coroutine and Motor returns directly."""
    cursor = cursor_or_awaitable
    if inspect.isawaitable(cursor):
        cursor = await cursor
    result: list[dict[str, Any]] = await cursor.to_list(None)
    return result


class Database:
    """One MongoDB client and the collections of one database, all writing durably."""

    def __init__(
        self,
        client: Any,
        db_name: str,
        *,
        supports_transactions: bool,
        retry_seconds: float = DEFAULT_TIMEOUT_MS / 1000,
        planner: Planner = "full",
    ) -> None:
        self.client = client
        self.db = client.get_database(db_name, write_concern=DURABLE)
        self.supports_transactions = supports_transactions
        self.planner = planner
        self.retry_seconds = retry_seconds
        self.sessions = self.db["sessions"]
        self.messages = self.db["messages"]
        self.api_keys = self.db["api_keys"]
        self.idempotency = self.db["idempotency_keys"]
        self.trusted_documents = self.db["trusted_documents"]
        self.registered_documents = self.db["registered_documents"]
        self.deleted_sessions = self.db["deleted_sessions"]
        """Which organization a deleted session belonged to, for the change stream."""
        self.session_counts = self.db["session_counts"]
        """Each organization's number of sessions (storage/session_counts.py)."""

    @classmethod
    async def connect(
        cls,
        uri: str,
        db_name: str,
        *,
        driver: Driver = "pymongo",
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        event_listeners: Sequence[Any] = (),
        planner: Planner | None = None,
    ) -> Database:
        """Open a client and learn whether the deployment can run transactions.

        `timeout_ms` bounds the wait for a database that cannot be reached: selecting the
        server, connecting to it, and retrying a transaction (see `in_transaction`).
        `event_listeners` (`pymongo.monitoring` listeners) are handed to the client, for
        tests and diagnostics that watch the commands sent. `planner` is learned from the
        server's `buildInfo` unless given.
        """
        # No socketTimeoutMS, timeoutMS or waitQueueTimeoutMS: with any of them PyMongo's
        # async client waits through asyncio.wait_for, which on Python 3.11 can swallow a
        # task's cancellation, and subscriptions are stopped by cancelling them. timeoutMS
        # would also fail an idle change stream's wait for its next event.
        options: dict[str, Any] = {
            "tz_aware": True,
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": timeout_ms,
            "uuidRepresentation": "standard",
            "appname": "sessiongraph",
        }
        if event_listeners:
            options["event_listeners"] = list(event_listeners)
        client: Any
        if driver == "motor":
            check_driver(driver)
            from motor.motor_asyncio import AsyncIOMotorClient

            client = AsyncIOMotorClient(uri, **options)
        else:
            client = AsyncMongoClient(uri, **options)
        try:
            hello = await client.admin.command("hello")
            if planner is None:
                planner = planner_of(await client.admin.command("buildInfo"))
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
        return cls(
            client,
            db_name,
            supports_transactions=transactions,
            retry_seconds=timeout_ms / 1000,
            planner=planner,
        )

    async def ensure_indexes(self) -> None:
        """Create every index the queries rely on; a no-op when they exist."""
        await self.sessions.create_indexes(SESSION_INDEXES)
        await self.messages.create_indexes(MESSAGE_INDEXES)
        await self.api_keys.create_indexes(API_KEY_INDEXES)
        await self.idempotency.create_indexes(IDEMPOTENCY_INDEXES)
        await self.registered_documents.create_indexes(REGISTERED_DOCUMENT_INDEXES)
        await self.deleted_sessions.create_indexes(DELETED_SESSION_INDEXES)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.client.admin.command("ping")

    async def in_transaction(self, callback: Callable[[Any], Awaitable[T]]) -> T:
        """Run `callback(session)` in a transaction, retried on transient errors.

        The retry rules are those of the driver's `with_transaction`: a
        TransientTransactionError runs the whole transaction again and an
        UnknownTransactionCommitResult retries the commit. But `with_transaction` keeps
        retrying for 120 s (a transaction whose server cannot be selected counts as
        transient), far longer than a request should wait; here the retries stop after
        `retry_seconds` and the last error is raised.

        On a deployment without transactions the callback runs once with `session=None`.
        """
        if not self.supports_transactions:
            return await callback(None)
        deadline = time.monotonic() + self.retry_seconds
        session = self.client.start_session()
        if inspect.isawaitable(session):
            session = await session
        async with session:
            attempt = 0
            while True:
                attempt += 1
                started = session.start_transaction(write_concern=DURABLE)
                if inspect.isawaitable(started):
                    await started
                try:
                    result = await callback(session)
                except BaseException as error:
                    if session.in_transaction and not await _aborted(session):
                        await self._kill(session)
                    if _labelled(error, TRANSIENT_TRANSACTION_ERROR) and await _backed_off(
                        attempt, deadline
                    ):
                        continue
                    raise
                try:
                    committed = await _committed(session, deadline)
                except BaseException:
                    # Given up on, the commit may never have reached the database, whose
                    # transaction would then hold the session's documents until it expires
                    # (60 s by default), failing every other append to them meanwhile.
                    await self._kill(session)
                    raise
                if committed:
                    return result

    async def _kill(self, session: Any) -> None:
        """End `session` on the server, and with it any transaction it left open there (a
        commit that may have applied stays applied). Bounded and best effort: when the
        database cannot be reached, it expires the transaction by itself."""
        try:
            async with asyncio.timeout(ABANDON_SECONDS):
                await self.client.admin.command({"killSessions": [session.session_id]})
        except (PyMongoError, TimeoutError) as error:
            log.warning("could not end an abandoned transaction's session: %s", error)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await close_client(self.client)


async def updated(
    collection: Any,
    key: dict[str, Any],
    change: dict[str, Any],
    projection: dict[str, Any],
    session: Any,
    condition: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The document of `key` (its `_id` and shard key) after `change`, made only if it also
    matches `condition`; None when it does not exist or does not match.

    Outside a transaction this is findAndModify, the one atomic form. In a transaction it is
    an update and a read of its own write, as atomic there (a concurrent writer of the
    document conflicts and retries), and served from the `_id` index by the embedded
    database, which runs findAndModify's write as a collection scan (it re-asserts the query
    under `$and`, which no index serves: ~130 ms at 10,000 sessions)."""
    match = {**key, **(condition or {})}
    if session is None:
        found: dict[str, Any] | None = await collection.find_one_and_update(
            match, change, projection=projection, return_document=ReturnDocument.AFTER
        )
        return found
    result = await collection.update_one(match, change, session=session)
    if result.matched_count == 0:
        return None
    after: dict[str, Any] | None = await collection.find_one(key, projection, session=session)
    return after


async def _committed(session: Any, deadline: float) -> bool:
    """Commit the session's transaction: True once committed, False when the whole
    transaction must run again."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await session.commit_transaction()
            return True
        except PyMongoError as error:
            unknown = _labelled(error, UNKNOWN_COMMIT_RESULT) and not (
                isinstance(error, OperationFailure) and error.code == MAX_TIME_MS_EXPIRED
            )
            if unknown and await _backed_off(attempt, deadline):
                continue
            if _labelled(error, TRANSIENT_TRANSACTION_ERROR) and await _backed_off(
                attempt, deadline
            ):
                return False
            raise


async def _aborted(session: Any) -> bool:
    """Abort the session's transaction; False when the database did not confirm it in
    time. Bounded, because it also runs while a request is being cancelled for taking
    too long, perhaps on a database that stopped answering."""
    try:
        async with asyncio.timeout(ABANDON_SECONDS):
            await session.abort_transaction()
    except TimeoutError:
        return False
    # PyMongo ignores an abort's errors (as the transactions spec says) after retrying it
    # once; a transaction left open by those expires on the server.
    return True


def _labelled(error: BaseException, label: str) -> bool:
    return isinstance(error, PyMongoError) and error.has_error_label(label)


async def _backed_off(attempt: int, deadline: float) -> bool:
    """Wait before retry number `attempt` (with jitter, growing); False, without waiting,
    when the wait would end past `deadline`."""
    first, most = RETRY_BACKOFF_SECONDS
    delay = random.random() * min(first * 1.5**attempt, most)
    if time.monotonic() + delay >= deadline:
        return False
    await asyncio.sleep(delay)
    return True


async def close_client(client: Any) -> None:
    closing = client.close()
    if inspect.isawaitable(closing):
        await closing


def _redact(uri: str) -> str:
    if "@" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
