"""Settings, read once from the environment and validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sessiongraph.tokens import MIN_SECRET_LENGTH
from storage.database import Driver, check_driver
from storage.secret_box import SecretBox

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the server. Environment variables use the `SESSIONGRAPH_` prefix,
    except `MONGODB_URI`, which keeps its conventional name."""

    model_config = SettingsConfigDict(env_prefix="SESSIONGRAPH_", extra="ignore", frozen=True)

    mongodb_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MONGODB_URI", "SESSIONGRAPH_MONGODB_URI"),
        description="MongoDB connection string; unset starts the embedded SecantusDB.",
    )
    db_name: str = Field(default="sessiongraph", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    driver: Driver = "pymongo"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Logs as text for people, or one JSON object per line."
    )

    embedded_data_dir: Path = PROJECT_ROOT / "data" / "secantus"
    embedded_port: int = Field(default=27117, ge=0, le=65535)
    embedded_command: str = "secantusd-py"
    embedded_start_timeout_seconds: float = Field(default=30.0, gt=0)

    db_timeout_ms: int = Field(
        default=5000,
        ge=100,
        description="How long a request waits for an unreachable database (selecting "
        "the server, connecting, retrying a transaction) before failing with "
        "SERVICE_UNAVAILABLE.",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted before it is checked again; "
        "a revoked key stops working at most this long after revocation.",
    )
    events_mode: Literal["auto", "changestream", "local"] = Field(
        default="auto",
        description="Where subscriptions get events: a MongoDB change stream (every server "
        "process sees every write), this process's own writes (local), or auto: a change "
        "stream when the database is a replica set.",
    )
    event_retention_seconds: int = Field(
        default=86_400,
        ge=86_400,
        description="How long the org-wide event log (sessionEvents) keeps each event, so "
        "how long a cursor can be resumed from; an older cursor gets CURSOR_EXPIRED.",
    )
    expiry_sweep_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often each server process marks sessions past their expiry as "
        "completed, which sessionEvents reports as COMPLETED; 0 turns the sweep off.",
    )
    ws_init_timeout_seconds: float = Field(default=5.0, gt=0)
    ws_keep_alive_seconds: float = Field(default=15.0, gt=0)
    ws_max_subscriptions: int = Field(default=100, ge=1)
    subscriber_buffer: int = Field(
        default=1000,
        ge=1,
        description="Messages queued per subscriber; a slower one re-reads from storage.",
    )
    rate_limit_per_second: float = Field(
        default=250.0,
        ge=0,
        description="Sustained POST /graphql requests per second per API key (per server "
        "process), whatever they cost; 0 turns rate limiting off, points included.",
    )
    rate_limit_burst: int = Field(default=500, ge=1, description="Requests a key may burst.")
    rate_limit_points_per_second: float = Field(
        default=5000.0,
        ge=0,
        description="Points (estimated query cost) an API key and its access tokens regain "
        "per second (per server process); 0 turns the points budget off.",
    )
    rate_limit_points_burst: int = Field(
        default=50_000,
        ge=1,
        description="The most points a key holds; an operation estimated above it is "
        "charged the whole of it.",
    )
    cors_origins: list[str] = Field(
        default=[],
        description='Browser origins allowed to call the API, as JSON: ["https://app.example"]. '
        "Empty (the default) allows none.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated, that encrypt write-only secrets at rest; "
        "the first encrypts, all decrypt. Unset: secrets are stored unencrypted.",
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="The secret (32 characters or more) that signs access tokens. Unset: "
        "the embedded development database uses one kept next to the development key; "
        "with MONGODB_URI, access tokens can be neither minted nor used.",
    )
    graphiql: bool = True
    graphql_get: bool = Field(
        default=False,
        description="Also run queries sent with GET (/graphql?query=...&variables=...), for "
        "clients and caches that want them; mutations are refused over GET either way.",
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="The longest an HTTP request may take to authenticate and execute; past "
        "it the answer is SERVICE_UNAVAILABLE (503). Bounds a database that accepts "
        "connections but stops answering.",
    )
    trusted_documents: Literal["optional", "required"] = Field(
        default="optional",
        description="required: run only trusted documents (`sessiongraph operations add`), "
        "named by documentId, the APQ extension or their exact text; any other is refused "
        "before parsing, and clients cannot register documents with APQ.",
    )
    console: bool = Field(
        default=True,
        description="Serve the live console page at /console: an API key, the org's sessions "
        "and a transcript that updates live. It only uses the public API.",
    )
    introspection: bool = True
    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics on GET /metrics (no API key; restrict it at the "
        "proxy, do not expose it publicly). Off: no metrics are collected.",
    )
    shutdown_timeout_seconds: int = Field(
        default=10,
        ge=1,
        description="At shutdown, how long open requests and websockets (closed with 1012, "
        "which clients reconnect from) get to finish before they are cancelled.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_query_depth: int = Field(
        default=12,
        ge=2,
        description="Deepest field nesting an operation may select (introspection fields "
        "aside; those are bounded by the token limit).",
    )
    max_query_cost: int = Field(
        default=50_000,
        ge=1,
        description="Operations whose estimated cost (fields selected, multiplied by page "
        "sizes) exceeds this are rejected with QUERY_TOO_COMPLEX before they run.",
    )
    dev_key_file: Path = PROJECT_ROOT / "data" / "dev-api-key"

    @field_validator("mongodb_uri")
    @classmethod
    def _check_uri(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(
                f"MONGODB_URI must start with mongodb:// or mongodb+srv://, got {value!r}"
            )
        return value

    @field_validator("driver")
    @classmethod
    def _check_driver(cls, value: Driver) -> Driver:
        try:
            check_driver(value)
        except ImportError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            SecretBox(secret_keys(value))
        return value

    @field_validator("token_secret")
    @classmethod
    def _check_token_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"SESSIONGRAPH_TOKEN_SECRET needs at least {MIN_SECRET_LENGTH} characters, "
                f"got {len(value.get_secret_value())}"
            )
        return value

    @property
    def embedded(self) -> bool:
        """True when the server runs its own SecantusDB instead of a given MongoDB."""
        return self.mongodb_uri is None


def secret_keys(value: SecretStr) -> list[str]:
    """The keys of a comma-separated SESSIONGRAPH_SECRET_KEY."""
    return [key.strip() for key in value.get_secret_value().split(",") if key.strip()]
