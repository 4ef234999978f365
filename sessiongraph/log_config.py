"""Logging for `sessiongraph serve`: uvicorn's configuration plus the project's loggers.

Given to uvicorn as `log_config`, so every worker process applies it.
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG

PROJECT_LOGGERS = ("sessiongraph", "resolvers", "storage", "strawberry")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with the project's loggers at `level`."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    for name in PROJECT_LOGGERS:
        config["loggers"][name] = {"handlers": ["default"], "level": level, "propagate": False}
    return config
