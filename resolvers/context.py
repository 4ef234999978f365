"""The one typed context every resolver receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import strawberry

from resolvers.errors import Forbidden
from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from resolvers.tokens import TokenIssuer
    from storage import MessageStore, SessionStore
    from storage.events import EventHub


class CostBudget(Protocol):
    """The budget an operation is charged its estimated cost from (the caller's key's
    points, sessiongraph/rate_limit.py), by the schema's guard before it executes."""

    def charge(self, cost: int) -> float:
        """Charge `cost`: 0 when granted, else the seconds until it can be afforded."""
        ...

    def report(self) -> dict[str, Any]:
        """What the answer's `extensions.cost` says of the charge and the budget."""
        ...


@dataclass(slots=True)
class Context:
    """Who is asking (the organization of the API key or access token) and what they may
    use. For an access token limited to particular sessions, `sessions` and `messages` are
    stores scoped to them.

    There is one context per HTTP request and per operation of a live connection (made by
    `Services.context` for the authenticated caller); subscriptions call `fresh_loaders`
    before each event so no event sees another's cached reads.
    """

    org_id: str
    request_id: str
    sessions: SessionStore
    messages: MessageStore
    events: EventHub
    resume_after_seq: int | None = None
    """Set by a transport resuming a message stream (SSE's Last-Event-ID): the stream
    replays after this seq, as `afterSeq` would."""
    execution_started: Callable[[], None] | None = None
    """Called once the operation has passed parsing and validation and starts executing
    (schema.guard.OperationGuard.on_execute): a streaming transport answers only then."""
    key_id: str | None = None
    read_only: bool = False
    session_ids: frozenset[str] | None = None
    """The only sessions an access token limited to particular sessions may see (its
    stores are scoped to them too); None: the whole organization."""
    token: bool = False
    """Whether the caller holds an access token rather than an API key."""
    tokens: TokenIssuer | None = None
    budget: CostBudget | None = None
    """What the operation is charged from; None: rate limiting is off."""
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.fresh_loaders()

    def check_writable(self) -> None:
        """Raise FORBIDDEN for a read-only access token: a mutation must change nothing."""
        if self.read_only:
            raise Forbidden(
                "This access token is read-only; mutations need a token minted "
                "with readOnly: false, or the API key."
            )

    def fresh_loaders(self) -> None:
        """Start a new batch-and-cache scope: a new request or subscription event."""
        self.loaders = Loaders(self.org_id, self.sessions, self.messages)


Info = strawberry.Info[Context, None]
