"""Minting access tokens for browsers and apps, on behalf of an API key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import Field, ValidationError, field_validator

from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden, TokensNotConfigured, bad_input
from resolvers.inputs import Id, Input

TOKEN_TTL_MIN = 5
TOKEN_TTL_MAX = 86_400
TOKEN_TTL_DEFAULT = 3600
MAX_TOKEN_SESSIONS = 100
"""The most sessions one access token may be limited to."""
MAX_ECHOED_IDS = 5


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A new access token and what it grants."""

    token: str
    expires_at: datetime
    read_only: bool
    session_ids: list[str] | None


class Expiring(Protocol):
    """What a minted token's claims tell the minter."""

    @property
    def expires_at(self) -> datetime: ...


class TokenIssuer(Protocol):
    """Signs access tokens (sessiongraph.tokens.AccessTokens is one)."""

    def mint(
        self,
        org_id: str,
        key_id: str,
        *,
        ttl_seconds: int,
        read_only: bool,
        session_ids: list[str] | None,
        now: datetime | None = None,
    ) -> tuple[str, Expiring]: ...


class AccessTokenInput(Input):
    """What an access token grants and for how long."""

    ttl_seconds: Annotated[int, Field(ge=TOKEN_TTL_MIN, le=TOKEN_TTL_MAX)] = Field(
        default=TOKEN_TTL_DEFAULT,
        description=f"Lifetime in seconds, {TOKEN_TTL_MIN} to {TOKEN_TTL_MAX:,}.",
    )
    read_only: bool = Field(
        default=True, description="Whether every mutation is refused with FORBIDDEN."
    )
    session_ids: list[Id] | None = Field(
        default=None,
        description=f"The only sessions the token sees (at most {MAX_TOKEN_SESSIONS}); "
        "null: the whole organization.",
    )

    @field_validator("session_ids")
    @classmethod
    def _check_session_ids(cls, value: list[Id] | None) -> list[Id] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one session id, or null for the whole organization")
        unique = list(dict.fromkeys(value))
        if len(unique) > MAX_TOKEN_SESSIONS:
            raise ValueError(
                f"has {len(unique)} ids; a token may be limited to at most {MAX_TOKEN_SESSIONS}"
            )
        return unique


async def create_access_token(ctx: Context, data: dict[str, Any]) -> MintedToken:
    """A new access token for the caller's organization, after checking that the caller
    holds an API key and that every session asked for is the organization's."""
    if ctx.key_id is None or ctx.token:
        raise Forbidden(
            "Only an API key can mint access tokens; this request carries an access token."
        )
    if ctx.tokens is None:
        raise TokensNotConfigured(
            "Access tokens are not configured on this server: set SESSIONGRAPH_TOKEN_SECRET."
        )
    try:
        valid = AccessTokenInput.model_validate(data)
    except ValidationError as error:
        raise bad_input(error, "input") from None
    if valid.session_ids is not None:
        found = await ctx.sessions.get_many(ctx.org_id, valid.session_ids)
        unknown = [session_id for session_id in valid.session_ids if session_id not in found]
        if unknown:
            shown = repr(unknown[:MAX_ECHOED_IDS])[:-1] + (
                ", ...]" if len(unknown) > MAX_ECHOED_IDS else "]"
            )
            raise BadUserInput(
                f"Invalid input: input.sessionIds = {shown}: no such sessions in this "
                "organization.",
                fields=["input.sessionIds"],
            )
    token, grant = ctx.tokens.mint(
        ctx.org_id,
        ctx.key_id,
        ttl_seconds=valid.ttl_seconds,
        read_only=valid.read_only,
        session_ids=valid.session_ids,
    )
    return MintedToken(token, grant.expires_at, valid.read_only, valid.session_ids)
