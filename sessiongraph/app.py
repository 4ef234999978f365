"""The application factory: `create_app(settings)` builds the whole Starlette app.

Nothing here does I/O at import time or in `create_app`. The module's `lifespan` opens the
database (starting the embedded one when no `MONGODB_URI` is given), starts the services
requests use, and at shutdown ends the live operations before closing what they read from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import strawberry
from pymongo import monitoring
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from schema import create_schema
from sessiongraph.access_log import AccessLog
from sessiongraph.auth import KeyVerifier
from sessiongraph.console import console_routes
from sessiongraph.database import open_database
from sessiongraph.dev_key import DEV_TOKEN_SECRET_FILE, announce_development_key
from sessiongraph.documents import PersistedDocuments
from sessiongraph.graphiql import graphiql_asset_routes
from sessiongraph.graphql_http import GraphQLHTTP
from sessiongraph.health import health_routes
from sessiongraph.live.engine import LiveEngine
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.websocket import GraphQLWebSocket
from sessiongraph.metrics import Metrics
from sessiongraph.rate_limit import PointBudgets, RateLimit
from sessiongraph.services import Services, State
from sessiongraph.settings import Settings, secret_keys
from sessiongraph.tokens import AccessTokens, development_token_secret
from sessiongraph.tracing import tracing_from_environment
from storage import ApiKeyStore, Database, MessageStore, SessionStore
from storage.events import EventHub
from storage.persisted import PersistedDocumentStore
from storage.secret_box import SecretBox
from storage.session_events import SessionEventLog

if TYPE_CHECKING:
    from sessiongraph.telemetry import Tracing

log = logging.getLogger("sessiongraph")


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app for `settings` (read from the environment when not given)."""
    settings = settings or Settings()
    # Per app, in a registry of its own; None when SESSIONGRAPH_METRICS is off.
    metrics = Metrics() if settings.metrics else None
    # None unless the OTEL_* variables turn tracing on; then nothing of it runs per request.
    tracing = tracing_from_environment()
    schema = build_schema(settings, metrics, tracing)
    live = live_engine(schema, settings, metrics)
    app = Starlette(
        middleware=middleware(settings, metrics, tracing),
        routes=routes(settings, schema, live, metrics),
        lifespan=lifespan,
    )
    app.state.parts = Parts(settings, live, metrics, tracing)
    return app


@dataclass(frozen=True, slots=True)
class Parts:
    """What `create_app` builds without I/O and `lifespan` starts and stops, kept on
    `app.state.parts` (the server reads `live` there to end SSE streams as shutdown begins)."""

    settings: Settings
    live: LiveEngine
    metrics: Metrics | None
    tracing: Tracing | None

    def command_listeners(self) -> list[monitoring.CommandListener]:
        """The MongoDB client's listeners: failed commands counted, commands traced."""
        listeners = [self.metrics.command_listener()] if self.metrics is not None else []
        if self.tracing is not None:
            listeners.append(self.tracing.command_listener())
        return listeners


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[State]:
    """The app's running life: the database opened and the services started for requests
    (as the lifespan state, `request.state["services"]`); at shutdown, the live operations
    ended first, then the services, the database and tracing stopped."""
    parts: Parts = app.state.parts
    settings = parts.settings
    async with (
        tracing_running(parts.tracing),
        open_database(settings, event_listeners=parts.command_listeners()) as db,
    ):
        services = await start_services(db, parts)
        # Also on the app itself, for operators' tooling and the tests' leak checks.
        app.state.services = services
        try:
            yield {"services": services, "database": db}
        finally:
            # uvicorn has closed the websockets (1012) and waited for them; close any
            # left, end the SSE streams, and let every subscription stop before what
            # it reads from goes.
            try:
                await parts.live.drain(settings.shutdown_timeout_seconds)
            finally:
                log.info("shutting down: closing the change stream and the database client")
                await services.stop()


def build_schema(
    settings: Settings, metrics: Metrics | None, tracing: Tracing | None
) -> strawberry.Schema:
    """The GraphQL schema with the limits of `settings`, observed by metrics and tracing
    when they are on."""
    return create_schema(
        max_query_cost=settings.max_query_cost,
        max_depth=settings.max_query_depth,
        introspection=settings.introspection,
        observe_operation=metrics.observe_operation if metrics is not None else None,
        trace_operations=tracing.schema_extension() if tracing is not None else None,
    )


def live_engine(
    schema: strawberry.Schema, settings: Settings, metrics: Metrics | None
) -> LiveEngine:
    """The engine that runs subscriptions (and SSE operations) for every live transport."""
    return LiveEngine(
        schema,
        subscriber_buffer=settings.subscriber_buffer,
        max_subscriptions=settings.ws_max_subscriptions,
        keep_alive_seconds=settings.ws_keep_alive_seconds,
        init_timeout_seconds=settings.ws_init_timeout_seconds,
        metrics=metrics,
    )


def middleware(
    settings: Settings, metrics: Metrics | None, tracing: Tracing | None
) -> list[Middleware]:
    """The middleware, outermost first: tracing, CORS, the access log, rate limiting."""
    stack = [Middleware(AccessLog, metrics=metrics)]
    if tracing is not None:
        # Outermost, so that the access log line carries the request's trace id.
        stack.insert(0, Middleware(tracing.middleware))
    # CORS outside the rest, so that even a 429 carries its headers.
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After"],
                max_age=600,
            )
        )
    if settings.rate_limit_per_second > 0:
        stack.append(
            Middleware(
                RateLimit, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst
            )
        )
    return stack


def routes(
    settings: Settings, schema: strawberry.Schema, live: LiveEngine, metrics: Metrics | None
) -> list[BaseRoute]:
    """/graphql over HTTP and websockets, the probes, and what settings turn on: metrics,
    the console, GraphiQL's assets."""
    origins = OriginPolicy(settings.cors_origins)
    graphql_http = GraphQLHTTP(
        schema,
        graphiql=settings.graphiql,
        max_body_bytes=settings.max_body_bytes,
        get_queries=settings.graphql_get,
        timeout_seconds=settings.request_timeout_seconds,
        live=live,
        origins=origins,
    )
    return [
        Route("/graphql", graphql_http.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        WebSocketRoute("/graphql", GraphQLWebSocket(live, origins)),
        *health_routes(),
        *([Route("/metrics", metrics.endpoint)] if metrics is not None else []),
        *(console_routes() if settings.console else []),
        *(graphiql_asset_routes() if settings.graphiql else []),
    ]


@asynccontextmanager
async def tracing_running(tracing: Tracing | None) -> AsyncIterator[None]:
    """Tracing started for the block and its spans flushed after it (nothing when off)."""
    if tracing is None:
        yield
        return
    tracing.start()
    try:
        yield
    finally:
        await asyncio.to_thread(tracing.shutdown)


async def start_services(db: Database, parts: Parts) -> Services:
    """The stores, the event hub and the key verifier (both started) and the persisted
    documents on `db`; on the embedded database, the development key is printed too."""
    settings, metrics = parts.settings, parts.metrics
    keys = ApiKeyStore(db)
    events = EventHub(
        feed_capacity=settings.subscriber_buffer,
        on_restart=metrics.change_stream_restarts.inc if metrics is not None else None,
    )
    event_log = SessionEventLog(db, settings.event_retention_seconds)
    await event_log.ensure_indexes()
    await events.start(db, settings.events_mode, event_log, settings.expiry_sweep_seconds)
    publish = events.local_publisher()
    secrets = SecretBox(secret_keys(settings.secret_key)) if settings.secret_key else None
    services = Services(
        sessions=SessionStore(db, publish, secrets),
        messages=MessageStore(db, publish),
        events=events,
        verifier=KeyVerifier(keys, settings.auth_cache_seconds, tokens=access_tokens(settings)),
        documents=PersistedDocuments(PersistedDocumentStore(db), settings.trusted_documents),
        budgets=point_budgets(settings),
    )
    services.verifier.on_revoked(parts.live.end_revoked)
    services.verifier.start()
    if settings.embedded:
        await announce_development_key(keys, settings)
    return services


def access_tokens(settings: Settings) -> AccessTokens | None:
    """The token signer: with SESSIONGRAPH_TOKEN_SECRET, or on the embedded development
    database with a secret kept next to the development key; else None (no tokens)."""
    if settings.token_secret is not None:
        return AccessTokens(settings.token_secret.get_secret_value())
    if settings.embedded:
        return AccessTokens(
            development_token_secret(settings.dev_key_file.with_name(DEV_TOKEN_SECRET_FILE))
        )
    return None


def point_budgets(settings: Settings) -> PointBudgets | None:
    """The points budgets of the keys, or None when rate limiting or its points are off."""
    points = settings.rate_limit_points_per_second
    if settings.rate_limit_per_second <= 0 or points <= 0:
        return None
    return PointBudgets(points, settings.rate_limit_points_burst)
