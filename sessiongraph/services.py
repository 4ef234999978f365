"""What requests and websocket connections use, built once by the lifespan."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from resolvers.context import Context
from sessiongraph.auth import KeyVerifier
from sessiongraph.documents import PersistedDocuments
from storage import MessageStore, SessionStore
from storage.events import EventHub


@dataclass(frozen=True, slots=True)
class Services:
    """The stores, the event hub, the key verifier and the persisted documents of the
    running app."""

    sessions: SessionStore
    messages: MessageStore
    events: EventHub
    verifier: KeyVerifier
    documents: PersistedDocuments

    def context(self, org_id: str, request_id: str | None = None) -> Context:
        """A resolver context for `org_id` ("" until a websocket connection authenticates)."""
        return Context(
            org_id=org_id,
            request_id=request_id or uuid.uuid4().hex,
            sessions=self.sessions,
            messages=self.messages,
            events=self.events,
        )
