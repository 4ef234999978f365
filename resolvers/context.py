"""The one typed context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import strawberry

from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from storage import MessageStore, SessionStore


@dataclass(slots=True)
class Context:
    """Who is asking (the organization of the API key) and what they may use."""

    org_id: str
    request_id: str
    sessions: SessionStore
    messages: MessageStore
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        # Loaders cache per request (or per subscription event), never across them.
        self.loaders = Loaders(self.org_id, self.messages)


Info = strawberry.Info[Context, None]
