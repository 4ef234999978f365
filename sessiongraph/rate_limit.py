"""Per-key rate limiting for POST /graphql: a token bucket per API key.

Every request costs one token, whatever it asks for: a cost per operation (the estimate of
schema/cost.py) would need the parsed document before this middleware, which runs before
GraphQL parsing. Each answer reports the bucket in the IETF draft's `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` headers.

Buckets live in this process: with N server processes a key may reach N times the rate.
Requests without a key share a bucket per client address, so they cannot be used to get
around the limit (they fail authentication anyway).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.error_codes import ErrorCode, coded_error, error_body
from sessiongraph.auth import bearer_key


class TokenBuckets:
    """Buckets of `burst` tokens refilled at `rate` per second, least recently used evicted."""

    def __init__(self, rate: float, burst: int, max_buckets: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, name: str, now: float | None = None) -> float:
        """Take a token for `name`: 0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.get(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1:
            self._buckets[name] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[name] = (tokens, now)
            wait = (1 - tokens) / self.rate
        self._buckets.move_to_end(name)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def headers(self, name: str) -> list[tuple[bytes, bytes]]:
        """`RateLimit-*` headers for `name` as its last `take` left it: the burst, the whole
        requests left, and the seconds until the bucket is full again."""
        tokens, _ = self._buckets.get(name, (float(self.burst), 0.0))
        reset = math.ceil((self.burst - tokens) / self.rate) if self.rate > 0 else 0
        return [
            (b"ratelimit-limit", str(self.burst).encode()),
            (b"ratelimit-remaining", str(math.floor(tokens)).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]


class RateLimit:
    """ASGI middleware answering 429 RATE_LIMITED, with Retry-After, to a key over its rate."""

    def __init__(self, app: ASGIApp, rate: float, burst: int, path: str = "/graphql") -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = bearer_key(headers.get(b"authorization", b"").decode("latin-1"))
        if key is not None:
            name = "key:" + hashlib.sha256(key.encode()).hexdigest()
        else:
            name = "addr:" + str((scope.get("client") or ("?",))[0])
        wait = self.buckets.take(name)
        budget = self.buckets.headers(name)
        if wait == 0:

            async def send_with_budget(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), *budget]}
                await send(message)

            await self.app(scope, receive, send_with_budget)
            return
        retry_after = str(max(1, math.ceil(wait)))
        body = orjson.dumps(
            error_body(
                coded_error(
                    f"Too many requests for this API key; retry in {retry_after} s.",
                    ErrorCode.RATE_LIMITED,
                    retryAfter=int(retry_after),
                )
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry_after.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *budget,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
