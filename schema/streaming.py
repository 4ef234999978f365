"""The extension that tells a streaming transport when an operation starts executing."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension


class ExecutionStarts(SchemaExtension):
    """Calls the context's `execution_started` once the operation has been parsed and has
    passed validation and every limit (list it last): a transport that must answer a
    refused operation with an HTTP status (SSE) waits for this or for the refusal."""

    def on_execute(self) -> Iterator[None]:
        started = getattr(self.execution_context.context, "execution_started", None)
        if started is not None:
            started()
        yield
