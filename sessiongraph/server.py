"""uvicorn's server, which also ends the app's SSE streams as soon as shutdown begins."""

from __future__ import annotations

import socket

import uvicorn

from sessiongraph.live.engine import LiveEngine


class Server(uvicorn.Server):
    """uvicorn's `Server` for an app with a live engine. uvicorn closes websockets at
    shutdown (1012) but waits for HTTP responses to finish, up to its graceful timeout,
    and an SSE stream never finishes by itself: this ends them first."""

    def __init__(self, config: uvicorn.Config, live: LiveEngine | None) -> None:
        super().__init__(config)
        self.live = live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.live is not None:
            await self.live.shutting_down()
        await super().shutdown(sockets)
