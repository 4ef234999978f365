"""Reading what the server's log lines carry besides their message (logging's `extra`)."""

from __future__ import annotations

import logging
from typing import Any


def extra(record: logging.LogRecord, name: str) -> Any:
    """The value the line was logged with as `name`; a KeyError when it has none."""
    return record.__dict__[name]


def extras(record: logging.LogRecord, *names: str) -> tuple[Any, ...]:
    """The values the line was logged with as `names`, in order."""
    return tuple(extra(record, name) for name in names)
