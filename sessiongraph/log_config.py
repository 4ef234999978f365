"""Logging for `sessiongraph serve`: uvicorn's configuration plus the project's loggers,
as text for people or as one JSON object per line for log pipelines.

Given to uvicorn as `log_config`, so every worker process applies it.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from uvicorn.config import LOGGING_CONFIG

PROJECT_LOGGERS = ("sessiongraph", "resolvers", "storage", "strawberry")
STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str, style: Literal["text", "json"] = "text") -> dict[str, Any]:
    """uvicorn's logging configuration with the project's loggers at `level`."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    if style == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = f"{__name__}.JsonFormatter"
    for name in PROJECT_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": level, "propagate": False}
    return config
