"""Encryption at rest for write-only secrets (Twilio credentials, server headers).

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) authenticates what it encrypts, so
a tampered value fails to open rather than decrypting to garbage. Several keys may be given:
the first encrypts, all decrypt, which lets keys be rotated.
"""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED = "fernet"


class InvalidSecretKey(ValueError):
    """A configured key is not a Fernet key."""


class SecretBox:
    """Seals a dict of secrets into `{"fernet": token}` and opens it again."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise InvalidSecretKey("at least one key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError:
            raise InvalidSecretKey(
                "each key must be 32 url-safe base64-encoded bytes, as made by "
                "cryptography's Fernet.generate_key()"
            ) from None

    def seal(self, secrets: dict[str, Any]) -> dict[str, str]:
        """The encrypted form of `secrets`, as stored."""
        return {SEALED: self._fernet.encrypt(orjson.dumps(secrets)).decode()}

    def open(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The secrets of a stored value, sealed or (written before a key was set) plain."""
        if SEALED not in stored:
            return stored
        try:
            opened: dict[str, Any] = orjson.loads(self._fernet.decrypt(stored[SEALED].encode()))
        except InvalidToken:
            raise InvalidSecretKey("no configured key opens this value") from None
        return opened
