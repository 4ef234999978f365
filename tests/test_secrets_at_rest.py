"""With SESSIONGRAPH_SECRET_KEY set, write-only secrets are encrypted at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from storage import Database
from storage.secret_box import InvalidSecretKey, SecretBox
from tests.api_client import ApiClient
from tests.keys import new_org_key
from tests.operations import CREATE_SESSION_ID
from tests.serving import bound_socket, serve

KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
SECRETS = {
    "twilioAuthToken": "auth-token-PLAINTEXT-1",
    "twilioApiKey": "api-key-PLAINTEXT-2",
    "twilioApiSecret": "api-secret-PLAINTEXT-3",
}
HEADER_VALUE = "header-PLAINTEXT-4"
PHONE = {
    "twilioPhoneNumber": "+14155550100",
    "twilioAccountSid": "AC1",
    **SECRETS,
    "server": {"url": "https://hooks.example", "headers": {"X-Token": HEADER_VALUE}},
}


async def test_the_stored_document_holds_no_plaintext_secret(
    settings: Settings, database: Database
) -> None:
    app = create_app(settings.model_copy(update={"secret_key": SecretStr(KEY)}))
    _, key = await new_org_key(database)
    async with serve(app, bound_socket()) as url, ApiClient(url, key) as api:
        created = await api.data(CREATE_SESSION_ID, {"input": {"phoneNumber": PHONE}})

    raw = await database.sessions.find_one({"_id": created["createSession"]["id"]})
    assert raw is not None
    for secret in [*SECRETS.values(), HEADER_VALUE]:
        assert secret not in repr(raw)
    opened = SecretBox([KEY]).open(raw["phone_number_secrets"])
    assert opened == {**SECRETS, "serverHeaders": {"X-Token": HEADER_VALUE}}


def test_a_rotated_key_list_still_opens_what_the_old_key_sealed() -> None:
    sealed = SecretBox([OLD_KEY]).seal({"twilioAuthToken": "t"})

    assert SecretBox([KEY, OLD_KEY]).open(sealed) == {"twilioAuthToken": "t"}


def test_a_tampered_value_does_not_open() -> None:
    sealed = SecretBox([KEY]).seal({"twilioAuthToken": "t"})
    token = sealed["fernet"]
    tampered = {"fernet": token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]}

    with pytest.raises(InvalidSecretKey):
        SecretBox([KEY]).open(tampered)


def test_a_malformed_secret_key_is_rejected_at_start_up() -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(secret_key="not-a-fernet-key")
