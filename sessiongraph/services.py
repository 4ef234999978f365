"""What requests and websocket connections use, built once by the lifespan."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from resolvers.context import Context
from sessiongraph.auth import Caller, KeyVerifier
from sessiongraph.documents import PersistedDocuments
from storage import MessageStore, SessionStore
from storage.events import EventHub
from storage.scope import ScopedMessageStore, ScopedSessionStore


@dataclass(frozen=True, slots=True)
class Services:
    """The stores, the event hub, the key verifier and the persisted documents of the
    running app."""

    sessions: SessionStore
    messages: MessageStore
    events: EventHub
    verifier: KeyVerifier
    documents: PersistedDocuments

    def context(self, org_id: str | Caller, request_id: str | None = None) -> Context:
        """A resolver context for a caller (or a bare organization id; "" until a
        websocket connection authenticates)."""
        context = Context(
            org_id="",
            request_id=request_id or uuid.uuid4().hex,
            sessions=self.sessions,
            messages=self.messages,
            events=self.events,
            tokens=self.verifier.tokens,
        )
        if isinstance(org_id, Caller):
            self.authenticate(context, org_id)
        else:
            context.org_id = org_id
            context.fresh_loaders()
        return context

    def authenticate(self, context: Context, caller: Caller) -> None:
        """Make `context` act for `caller`: its organization, its rights, and, for a token
        limited to particular sessions, stores that see only those."""
        context.org_id = caller.org_id
        context.key_id = caller.key_id
        context.read_only = caller.read_only
        context.session_ids = caller.session_ids
        context.token = caller.token
        if caller.session_ids is None:
            context.sessions, context.messages = self.sessions, self.messages
        else:
            context.sessions = ScopedSessionStore(self.sessions, caller.session_ids)
            context.messages = ScopedMessageStore(self.messages, caller.session_ids)
        context.fresh_loaders()
