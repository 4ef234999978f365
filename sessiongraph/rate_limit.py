"""Per-key rate limiting: a ceiling on requests before parsing, and a budget of points that
each operation is charged its estimated cost from.

Two token buckets per API key, shared by the key and every access token minted from it (a
token is charged to its key's id, so minting tokens does not multiply a key's budget):

* the request ceiling (`RateLimit`, an ASGI middleware): one token per POST /graphql, taken
  before the body is read, so floods (of anything, unparseable included) are refused before
  they cost a parse;
* the points budget (`PointBudgets`): once the guard (schema/guard.py) has the estimate of
  schema/cost.py, the operation is charged that many points (at least 1), on every
  transport; over budget it is refused with RATE_LIMITED before anything executes.

An answer reports the budget that priced it: `extensions.cost` and the IETF draft's
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers carry the same numbers,
taken when the operation was charged. An answer no operation was priced for (a refusal by the
request ceiling, a malformed body, a missing credential) carries the request ceiling's.

Buckets live in this process: with N server processes a key may reach N times the rate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.error_codes import error_body
from resolvers.errors import rate_limited
from sessiongraph.auth import KeyVerifier, bearer_key


class TokenBuckets:
    """Buckets of `burst` tokens refilled at `rate` per second, least recently used evicted."""

    def __init__(self, rate: float, burst: int, max_buckets: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, name: str, now: float | None = None, amount: float = 1) -> float:
        """Take `amount` tokens for `name`: 0 when granted, else the seconds until that
        many are available (nothing is taken then)."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.get(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= amount:
            self._buckets[name] = (tokens - amount, now)
            wait = 0.0
        else:
            self._buckets[name] = (tokens, now)
            wait = (amount - tokens) / self.rate
        self._buckets.move_to_end(name)
        if len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def left(self, name: str) -> float:
        """The tokens `name` had after its last `take` (a full bucket if none)."""
        return self._buckets.get(name, (float(self.burst), 0.0))[0]

    def headers(self, name: str) -> list[tuple[bytes, bytes]]:
        """`RateLimit-*` headers for `name` as its last `take` left it: the burst, the whole
        tokens left, and the seconds until the bucket is full again."""
        return rate_limit_headers(self.burst, self.left(name), self.rate)


def rate_limit_headers(burst: int, left: float, rate: float) -> list[tuple[bytes, bytes]]:
    """The `RateLimit-*` headers of a bucket of `burst` holding `left`, refilled at `rate`."""
    return [
        (b"ratelimit-limit", str(burst).encode()),
        (b"ratelimit-remaining", str(math.floor(left)).encode()),
        (b"ratelimit-reset", str(_reset_seconds(burst, left, rate)).encode()),
    ]


def _reset_seconds(burst: int, left: float, rate: float) -> int:
    return math.ceil((burst - left) / rate) if rate > 0 else 0


@dataclass(slots=True)
class _Priced:
    """What the middleware learns of its request's operation: the account that priced it."""

    account: Account | None = None


_PRICED: ContextVar[_Priced | None] = ContextVar("sessiongraph_rate_limit_priced", default=None)


class Account:
    """One operation's charge against its key's points bucket: what the guard charges,
    and what the answer reports (the bucket as the charge left it)."""

    def __init__(self, buckets: TokenBuckets, name: str) -> None:
        self.buckets = buckets
        self.name = name
        self.requested: int | None = None
        """The operation's estimated cost, once charged (or refused)."""
        self.left = float(buckets.burst)

    def charge(self, cost: int) -> float:
        """Charge the operation `cost` points (at least 1; at most the whole bucket, so
        that any operation the cost limit admits can run from a full one): 0 when granted,
        else the seconds until the key can afford it, and nothing is taken."""
        self.requested = cost
        amount = min(max(cost, 1), self.buckets.burst)
        wait = self.buckets.take(self.name, amount=amount)
        self.left = self.buckets.left(self.name)
        return wait

    def report(self) -> dict[str, Any]:
        """`extensions.cost`: the estimate, and the budget the charge left."""
        buckets = self.buckets
        return {
            "requested": self.requested,
            "limit": buckets.burst,
            "remaining": math.floor(self.left),
            "resetSeconds": _reset_seconds(buckets.burst, self.left, buckets.rate),
        }

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The `RateLimit-*` headers of the same numbers as `report`."""
        return rate_limit_headers(self.buckets.burst, self.left, self.buckets.rate)


class PointBudgets:
    """The points bucket of every API key (its tokens share it), made once per app."""

    def __init__(self, rate: float, burst: int) -> None:
        self.buckets = TokenBuckets(rate, burst)

    def account(self, key_id: str | None) -> Account | None:
        """A new account for one operation of the key `key_id` (None without a key); the
        HTTP request it runs in, if any, reports it."""
        if key_id is None:
            return None
        account = Account(self.buckets, "key:" + key_id)
        priced = _PRICED.get()
        if priced is not None:
            priced.account = account
        return account


class RateLimit:
    """ASGI middleware: the request ceiling, answering 429 RATE_LIMITED with Retry-After to
    a key over it, and the `RateLimit-*` headers of every answer."""

    def __init__(self, app: ASGIApp, rate: float, burst: int, path: str = "/graphql") -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        name = self._bucket_name(scope)
        wait = self.buckets.take(name)
        ceiling = self.buckets.headers(name)
        if wait == 0:
            priced = _Priced()
            reset = _PRICED.set(priced)

            async def send_with_budget(message: Message) -> None:
                if message["type"] == "http.response.start":
                    account = priced.account
                    budget = ceiling
                    if account is not None and account.requested is not None:
                        budget = account.headers()
                    message = {**message, "headers": [*message.get("headers", []), *budget]}
                await send(message)

            try:
                await self.app(scope, receive, send_with_budget)
            finally:
                _PRICED.reset(reset)
            return
        refusal = rate_limited(wait)
        retry_after = str((refusal.extensions or {})["retryAfter"])
        body = orjson.dumps(error_body(refusal.formatted))
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", retry_after.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *ceiling,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _bucket_name(scope: Scope) -> str:
        """The request's bucket, named without I/O: its key's id when the credential
        tells it (an access token, an API key the verifier knows), else a hash of the
        credential; requests without one share a bucket per client address, so they
        cannot be used to get around the limit (they fail authentication anyway)."""
        headers = dict(scope["headers"])
        credential = bearer_key(headers.get(b"authorization", b"").decode("latin-1"))
        if credential is None:
            return "addr:" + str((scope.get("client") or ("?",))[0])
        services = (scope.get("state") or {}).get("services")
        verifier: KeyVerifier | None = getattr(services, "verifier", None)
        key_id = verifier.known_key_id(credential) if verifier is not None else None
        if key_id is not None:
            return "key:" + key_id
        return "credential:" + hashlib.sha256(credential.encode()).hexdigest()
