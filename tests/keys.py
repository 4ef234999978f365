"""Credentials for the tests: new organizations with API keys, and the server's token signer."""

from __future__ import annotations

import uuid

from sessiongraph.settings import Settings
from sessiongraph.tokens import AccessTokens
from storage import ApiKeyStore, Database


async def new_org_key(database: Database) -> tuple[str, str]:
    """A fresh organization and an API key for it."""
    org_id = f"org-{uuid.uuid4().hex[:10]}"
    _, key = await ApiKeyStore(database).create(org_id, "test")
    return org_id, key


async def key_id_of(database: Database, org_id: str) -> str:
    """The id of the organization's only API key."""
    (record,) = await ApiKeyStore(database).list(org_id)
    return record["id"]


def signer(settings: Settings) -> AccessTokens:
    """The signer the test server uses, for crafting tokens the API cannot mint."""
    assert settings.token_secret is not None
    return AccessTokens(settings.token_secret.get_secret_value())
