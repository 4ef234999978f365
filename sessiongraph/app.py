"""The application factory: `create_app(settings)` builds the whole Starlette app.

Nothing here does I/O at import time. The lifespan starts the embedded database when no
`MONGODB_URI` is given, opens the MongoDB client, creates indexes, and closes it all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from schema import create_schema
from sessiongraph.access_log import AccessLog
from sessiongraph.auth import KeyVerifier
from sessiongraph.console import console_routes, graphiql_asset_routes
from sessiongraph.dev_key import DEV_TOKEN_SECRET_FILE, announce_development_key
from sessiongraph.documents import PersistedDocuments
from sessiongraph.embedded import EmbeddedDatabase
from sessiongraph.graphql_http import GraphQLHTTP
from sessiongraph.live.engine import LiveEngine
from sessiongraph.live.origins import OriginPolicy
from sessiongraph.live.websocket import GraphQLWebSocket
from sessiongraph.metrics import Metrics
from sessiongraph.rate_limit import PointBudgets, RateLimit
from sessiongraph.services import Services
from sessiongraph.settings import Settings, secret_keys
from sessiongraph.tokens import AccessTokens, development_token_secret
from sessiongraph.tracing import tracing_from_environment
from storage import ApiKeyStore, Database, MessageStore, SessionStore
from storage.events import EventHub
from storage.persisted import PersistedDocumentStore
from storage.secret_box import SecretBox
from storage.session_events import SessionEventLog

log = logging.getLogger("sessiongraph")

READY_TIMEOUT_SECONDS = 2.0


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


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app for `settings` (read from the environment when not given)."""
    settings = settings or Settings()
    # Per app, in a registry of its own; None when SESSIONGRAPH_METRICS is off.
    metrics = Metrics() if settings.metrics else None
    # None unless the OTEL_* variables turn tracing on; then nothing of it runs per request.
    tracing = tracing_from_environment()
    listeners = [metrics.command_listener()] if metrics is not None else []
    if tracing is not None:
        listeners.append(tracing.command_listener())
    schema = create_schema(
        max_query_cost=settings.max_query_cost,
        max_depth=settings.max_query_depth,
        introspection=settings.introspection,
        observe_operation=metrics.observe_operation if metrics is not None else None,
        trace_operations=tracing.schema_extension() if tracing is not None else None,
    )
    live = LiveEngine(
        schema,
        subscriber_buffer=settings.subscriber_buffer,
        max_subscriptions=settings.ws_max_subscriptions,
        keep_alive_seconds=settings.ws_keep_alive_seconds,
        init_timeout_seconds=settings.ws_init_timeout_seconds,
        metrics=metrics,
    )
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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        embedded: EmbeddedDatabase | None = None
        if tracing is not None:
            tracing.start()
        uri = settings.mongodb_uri
        if uri is None:
            embedded = EmbeddedDatabase(
                command=settings.embedded_command,
                data_dir=settings.embedded_data_dir,
                port=settings.embedded_port,
                start_timeout=settings.embedded_start_timeout_seconds,
            )
            await embedded.start_async()
            uri = embedded.uri
        try:
            db = await Database.connect(
                uri,
                settings.db_name,
                driver=settings.driver,
                timeout_ms=settings.db_timeout_ms,
                event_listeners=listeners,
            )
            await db.ensure_indexes()
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
                verifier=KeyVerifier(
                    keys, settings.auth_cache_seconds, tokens=access_tokens(settings)
                ),
                documents=PersistedDocuments(
                    PersistedDocumentStore(db), settings.trusted_documents
                ),
                budgets=point_budgets(settings),
            )
            services.verifier.on_revoked(live.end_revoked)
            services.verifier.start()
            if embedded is not None:
                await announce_development_key(keys, settings)
            # Also on the app itself, for operators' tooling and the tests' leak checks.
            app.state.services = services
            app.state.subscriptions = live.tracker
            try:
                yield {"services": services, "database": db}
            finally:
                # uvicorn has closed the websockets (1012) and waited for them; close any
                # left, end the SSE streams, and let every subscription stop before what
                # it reads from goes.
                try:
                    await live.drain(settings.shutdown_timeout_seconds)
                finally:
                    log.info("shutting down: closing the change stream and the database client")
                    await services.verifier.stop()
                    await events.stop()
                    await db.close()
        finally:
            if embedded is not None:
                await embedded.stop_async()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> JSONResponse:
        services: Services = request.state.services
        report: dict[str, Any] = {"database": "ok", "events": services.events.mode}
        try:
            await asyncio.wait_for(request.state.database.ping(), READY_TIMEOUT_SECONDS)
        except Exception as error:
            report["database"] = f"unreachable: {type(error).__name__}"
        if not services.events.running:
            report["events"] = "stopped"
        ready = report["database"] == "ok" and services.events.running
        return JSONResponse({"ready": ready, **report}, status_code=200 if ready else 503)

    middleware = [Middleware(AccessLog, metrics=metrics)]
    if tracing is not None:
        # Outermost, so that the access log line carries the request's trace id.
        middleware.insert(0, Middleware(tracing.middleware))
    # CORS outside the rest, so that even a 429 carries its headers.
    if settings.cors_origins:
        middleware.append(
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
        middleware.append(
            Middleware(
                RateLimit, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst
            )
        )
    app = Starlette(
        middleware=middleware,
        routes=[
            Route(
                "/graphql", graphql_http.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
            ),
            WebSocketRoute("/graphql", GraphQLWebSocket(live, origins)),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *([Route("/metrics", metrics.endpoint)] if metrics is not None else []),
            *(console_routes() if settings.console else []),
            *(graphiql_asset_routes() if settings.graphiql else []),
        ],
        lifespan=lifespan,
    )
    # For the server (sessiongraph.server), which ends SSE streams as shutdown begins.
    app.state.live = live
    return app
