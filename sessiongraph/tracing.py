"""Whether OpenTelemetry tracing is on: only the standard OTEL_* variables decide, and when
they leave it off nothing of OpenTelemetry is imported or run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessiongraph.telemetry import Tracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the environment asks for; empty when tracing is off.

    On when OTEL_TRACES_EXPORTER names exporters (`otlp`, `console`) or an OTLP endpoint is
    set; off when neither is, with OTEL_TRACES_EXPORTER=none, or with OTEL_SDK_DISABLED=true.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not named:
        return ["otlp"] if any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES) else []
    names = [name.strip().lower() for name in named.split(",") if name.strip()]
    return [name for name in names if name != "none"]


def tracing_from_environment(environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """Tracing as the OTEL_* variables configure it, or None when they leave it off."""
    names = exporter_names(environ)
    if not names:
        return None
    try:
        from sessiongraph.telemetry import Tracing
    except ImportError as error:
        raise RuntimeError(
            f"OpenTelemetry tracing is configured ({', '.join(names)}) but not installed "
            f"({error.name} is missing): install sessiongraph[otel]."
        ) from None
    return Tracing(names)
