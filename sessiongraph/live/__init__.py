"""Live operations: one engine, and the transports that carry it (websockets and SSE)."""
