"""One parse per document: the bounded cache the schema's parse step and the live engine's
reading of a document (its operation, its root field, whether it can be shared) all use."""

from __future__ import annotations

from functools import lru_cache

from graphql import DocumentNode, parse

MAX_TOKENS = 4000
"""The most tokens a document may have (MaxTokensLimiter); more is a parse error."""
CACHED_DOCUMENTS = 512


@lru_cache(maxsize=CACHED_DOCUMENTS)
def parsed_document(query: str, max_tokens: int | None = MAX_TOKENS) -> DocumentNode:
    """The parsed `query` (GraphQLSyntaxError when it does not parse), from the cache."""
    return parse(query, max_tokens=max_tokens)
