"""Access tokens: the mutation a backend calls to mint one for a browser or an app."""

from __future__ import annotations

from datetime import datetime

import strawberry

from resolvers import tokens as resolvers
from resolvers.context import Info
from schema.input_types import graphql_input
from schema.input_values import plain


@graphql_input(resolvers.AccessTokenInput, defaults_shown=True)
class AccessTokenInput:
    pass


@strawberry.type(description="A short-lived credential for a browser or an app.")
class AccessToken:
    token: str = strawberry.field(
        description="Send it as `Authorization: Bearer <token>`, in the websocket "
        "connection_init payload, or as ?access_token= on an event stream GET."
    )
    expires_at: datetime = strawberry.field(description="When the token stops working.")
    read_only: bool = strawberry.field(description="Whether mutations are refused.")
    session_ids: list[strawberry.ID] | None = strawberry.field(
        description="The only sessions the token sees; null: the whole organization."
    )


@strawberry.type
class TokenMutations:
    @strawberry.mutation(
        description="Mint an access token for this organization from an API key (tokens "
        "cannot mint); revoking the key ends its tokens."
    )
    async def create_access_token(self, info: Info, input: AccessTokenInput) -> AccessToken:
        minted = await resolvers.create_access_token(info.context, plain(input))
        return AccessToken(
            token=minted.token,
            expires_at=minted.expires_at,
            read_only=minted.read_only,
            session_ids=None
            if minted.session_ids is None
            else [strawberry.ID(i) for i in minted.session_ids],
        )
