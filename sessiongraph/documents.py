"""Which GraphQL document a request runs: its `query`, a trusted document named by
`documentId`, or one named by Apollo's automatic persisted query (APQ) extension.

Transport-independent: HTTP (POST and GET), websocket and SSE requests hand their fields to
`PersistedDocuments.resolve_request` and run the text it returns, or answer its
`DocumentProblem`; once an APQ document ran without a request error, `remember` keeps it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from resolvers.error_codes import ErrorCode
from storage import is_database_unavailable
from storage.persisted import (
    DOCUMENT_ID,
    MAX_DOCUMENT_BYTES,
    PersistedDocumentStore,
)
from storage.persisted import document_id as document_id_of

log = logging.getLogger(__name__)

TrustedDocumentsMode = Literal["optional", "required"]

APQ_VERSION = 1
# Apollo clients key on this exact message (and ErrorCode.PERSISTED_QUERY_NOT_FOUND) to send
# the document's text next.
PERSISTED_QUERY_NOT_FOUND_MESSAGE = "PersistedQueryNotFound"

CACHE_SIZE = 1000
TRUSTED_CACHE_SECONDS = 30.0
"""How long a process keeps trusting a document it read: `operations remove` takes
effect everywhere within this time."""


class DocumentProblem(Exception):
    """A request whose document cannot be run: a stable code, a message naming the field
    and value, and the HTTP status an HTTP transport answers with."""

    def __init__(self, code: ErrorCode, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestDocument:
    """The text to run, and the id under which to keep it for its organization once it
    ran (APQ registration), if any."""

    text: str
    register_as: str | None = None


class PersistedDocuments:
    """Resolves requests to documents, with a small in-process cache in front of MongoDB."""

    def __init__(
        self, store: PersistedDocumentStore, mode: TrustedDocumentsMode = "optional"
    ) -> None:
        self.store = store
        self.mode = mode
        self._cache: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    async def resolve_request(self, org_id: str, fields: Mapping[str, Any]) -> RequestDocument:
        """`resolve` for a request's fields as GraphQL over HTTP (a POST body, GET's
        parameters) and the websocket and SSE subscribe payloads name them: `query`,
        `extensions`, `documentId`."""
        return await self.resolve(
            org_id,
            query=fields.get("query"),
            extensions=fields.get("extensions"),
            document_id=fields.get("documentId"),
        )

    async def resolve(
        self,
        org_id: str,
        *,
        query: Any = None,
        extensions: Any = None,
        document_id: Any = None,
    ) -> RequestDocument:
        """The document a request with these fields runs, or DocumentProblem. Nothing is
        parsed here, so a document refused is refused before parsing."""
        if extensions is not None and not isinstance(extensions, dict):
            raise DocumentProblem(
                ErrorCode.BAD_REQUEST, "`extensions` must be a JSON object or null."
            )
        persisted = (extensions or {}).get("persistedQuery")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise DocumentProblem(ErrorCode.BAD_REQUEST, "`query` must be a non-empty string.")
        if document_id is not None:
            if query is not None or persisted is not None:
                raise DocumentProblem(
                    ErrorCode.BAD_REQUEST,
                    "Send `documentId` alone, without `query` or `extensions.persistedQuery`.",
                )
            return RequestDocument(await self._named(org_id, _checked_id(document_id)))
        if persisted is not None:
            return await self._apq(org_id, persisted, query)
        if query is None:
            raise DocumentProblem(
                ErrorCode.BAD_REQUEST,
                "The request needs a non-empty string `query`, a `documentId` or "
                "`extensions.persistedQuery`.",
            )
        if self.mode == "required":
            text = await self._find(org_id, document_id_of(query), trusted_only=True)
            if text is None:
                raise _not_trusted()
        return RequestDocument(query)

    async def remember(self, org_id: str, document: RequestDocument) -> None:
        """Keep an APQ document for `org_id` once it ran without a request error. Best
        effort: a document not kept is sent again by its client."""
        if document.register_as is None:
            return
        try:
            kept = await self.store.register(org_id, document.register_as, document.text)
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            log.warning("could not keep persisted query %s: %s", document.register_as, error)
            return
        if kept:
            self._put(("apq:" + org_id, document.register_as), document.text, None)
        else:
            log.info("organization %s keeps the most persisted queries allowed", org_id)

    async def _named(self, org_id: str, id_: str) -> str:
        text = await self._find(org_id, id_, trusted_only=self.mode == "required")
        if text is None:
            raise DocumentProblem(
                ErrorCode.PERSISTED_DOCUMENT_NOT_FOUND,
                f"`documentId` {id_!r}: no such persisted document on this server.",
            )
        return text

    async def _apq(self, org_id: str, persisted: Any, query: str | None) -> RequestDocument:
        if not isinstance(persisted, dict):
            raise DocumentProblem(
                ErrorCode.BAD_REQUEST, "`extensions.persistedQuery` must be a JSON object."
            )
        version = persisted.get("version")
        if version != APQ_VERSION:
            raise DocumentProblem(
                ErrorCode.PERSISTED_QUERY_VERSION_UNSUPPORTED,
                f"`extensions.persistedQuery.version` {version!r}: only version "
                f"{APQ_VERSION} is supported.",
            )
        sha256_hash = persisted.get("sha256Hash")
        if not isinstance(sha256_hash, str) or not DOCUMENT_ID.match("sha256:" + sha256_hash):
            raise DocumentProblem(
                ErrorCode.INVALID_DOCUMENT_ID,
                f"`extensions.persistedQuery.sha256Hash` {_shown(sha256_hash)}: expected 64 "
                "lowercase hexadecimal digits.",
            )
        id_ = "sha256:" + sha256_hash
        if query is None:
            text = await self._find(org_id, id_, trusted_only=self.mode == "required")
            if text is None:
                # 200, as Apollo Server answers it: some clients stop using APQ after a 4xx.
                raise DocumentProblem(
                    ErrorCode.PERSISTED_QUERY_NOT_FOUND,
                    PERSISTED_QUERY_NOT_FOUND_MESSAGE,
                    status=200,
                )
            return RequestDocument(text)
        actual = document_id_of(query)
        if actual != id_:
            raise DocumentProblem(
                ErrorCode.PERSISTED_QUERY_HASH_MISMATCH,
                f"`extensions.persistedQuery.sha256Hash` {sha256_hash!r} is not the SHA-256 "
                f"of `query` ({actual.removeprefix('sha256:')}).",
            )
        if await self._find(org_id, id_, trusted_only=True) is not None:
            return RequestDocument(query)
        if self.mode == "required":
            raise _not_trusted()
        if len(query.encode()) > MAX_DOCUMENT_BYTES:
            return RequestDocument(query)  # runs, but is too large to keep
        return RequestDocument(query, register_as=id_)

    async def _find(self, org_id: str, id_: str, *, trusted_only: bool) -> str | None:
        """A trusted document, or (unless `trusted_only`) one `org_id` registered."""
        text = self._get(("trusted", id_))
        if text is not None:
            return text
        text = await self.store.trusted(id_)
        if text is not None:
            self._put(("trusted", id_), text, TRUSTED_CACHE_SECONDS)
            return text
        if trusted_only:
            return None
        key = ("apq:" + org_id, id_)
        text = self._get(key)
        if text is None:
            text = await self.store.registered(org_id, id_)
            if text is not None:
                self._put(key, text, None)
        return text

    def _get(self, key: tuple[str, str]) -> str | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        text, expires = entry
        if expires < time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return text

    def _put(self, key: tuple[str, str], text: str, seconds: float | None) -> None:
        # A registered document's id fixes its text; only trust can be withdrawn.
        expires = time.monotonic() + seconds if seconds is not None else float("inf")
        self._cache[key] = (text, expires)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def _checked_id(value: Any) -> str:
    if not isinstance(value, str) or not DOCUMENT_ID.match(value):
        raise DocumentProblem(
            ErrorCode.INVALID_DOCUMENT_ID,
            f"`documentId` {_shown(value)}: expected 'sha256:' and 64 lowercase hexadecimal "
            "digits.",
        )
    return value


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _not_trusted() -> DocumentProblem:
    return DocumentProblem(
        ErrorCode.TRUSTED_DOCUMENT_REQUIRED,
        "This server runs only trusted documents (SESSIONGRAPH_TRUSTED_DOCUMENTS=required): "
        "send a registered `documentId` or the text of one.",
    )
