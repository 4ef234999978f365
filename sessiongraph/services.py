"""What requests and websocket connections use, built once by the lifespan."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypedDict

from resolvers.context import Context
from sessiongraph.auth import Caller, KeyVerifier
from sessiongraph.documents import PersistedDocuments
from sessiongraph.rate_limit import PointBudgets
from storage import Database, MessageStore, SessionStore
from storage.events import EventHub
from storage.scope import ScopedMessageStore, ScopedSessionStore


@dataclass(frozen=True, slots=True)
class Services:
    """The stores, the event hub, the key verifier, the persisted documents and the
    points budgets (None: rate limiting is off) of the running app."""

    sessions: SessionStore
    messages: MessageStore
    events: EventHub
    verifier: KeyVerifier
    documents: PersistedDocuments
    budgets: PointBudgets | None = None

    async def stop(self) -> None:
        """Stop re-checking credentials and close the change stream."""
        await self.verifier.stop()
        await self.events.stop()

    def context(self, caller: Caller, request_id: str | None = None) -> Context:
        """A resolver context acting for `caller`: its organization, its rights, and, for a
        token limited to particular sessions, stores that see only those; its operation is
        charged to the points of the caller's key."""
        scoped = caller.session_ids
        return Context(
            org_id=caller.org_id,
            request_id=request_id or uuid.uuid4().hex,
            sessions=self.sessions if scoped is None else ScopedSessionStore(self.sessions, scoped),
            messages=self.messages if scoped is None else ScopedMessageStore(self.messages, scoped),
            events=self.events,
            key_id=caller.key_id,
            read_only=caller.read_only,
            session_ids=scoped,
            token=caller.token,
            tokens=self.verifier.tokens,
            budget=self.budgets.account(caller.key_id) if self.budgets is not None else None,
        )


class State(TypedDict):
    """The lifespan state every request and websocket sees (`request.state["services"]`)."""

    services: Services
    database: Database
