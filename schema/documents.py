"""One parse per document: the bounded cache the schema's parse step and the live engine's
reading of a document (its operation, its root field, whether it can be shared) all use."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Generic, TypeVar

from graphql import DocumentNode, OperationDefinitionNode, parse

V = TypeVar("V")

MAX_TOKENS = 4000
"""The most tokens a document may have (MaxTokensLimiter); more is a parse error."""
CACHED_DOCUMENTS = 512


@lru_cache(maxsize=CACHED_DOCUMENTS)
def parsed_document(query: str, max_tokens: int | None = MAX_TOKENS) -> DocumentNode:
    """The parsed `query` (GraphQLSyntaxError when it does not parse), from the cache."""
    return parse(query, max_tokens=max_tokens)


class PerOperation(Generic[V]):
    """Values derived from an operation of a cached document, each computed once per
    (operation, key) and kept for at most `maxsize` of them (the oldest forgotten first).

    Keyed by the operation node's identity, which the parse cache makes stable for a text:
    graphql-core hashes a node by walking its whole tree. Each entry holds its node, so the
    id cannot be reused by another while the entry is kept."""

    def __init__(self, maxsize: int = CACHED_DOCUMENTS) -> None:
        self.maxsize = maxsize
        self._entries: dict[tuple[int, Hashable], tuple[OperationDefinitionNode, V]] = {}

    def get(self, operation: OperationDefinitionNode, key: Hashable, compute: Callable[[], V]) -> V:
        """The value for (`operation`, `key`), computed by `compute` the first time."""
        entry = self._entries.get((id(operation), key))
        if entry is not None and entry[0] is operation:
            return entry[1]
        value = compute()
        if len(self._entries) >= self.maxsize:
            del self._entries[next(iter(self._entries))]
        self._entries[(id(operation), key)] = (operation, value)
        return value
