"""The bot's one HTTP server: backend callbacks, the Telegram webhook and `GET /healthz`.

It runs when `PUBLIC_URL` is set, on `CALLBACK_PORT`, as a task of the bot's event loop, so
one public URL behind one reverse proxy reaches everything the bot serves. Parts add their
routes (`add_route`) before or while it runs; `/healthz` is always there.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from backends.server_limits import HEADER_TIMEOUT_S, raise_open_files_limit, server_options


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


class WebServer:
    """uvicorn serving one Starlette app; `start()` returns once it listens."""

    def __init__(
        self, *, host: str = "0.0.0.0", port: int = 8080, header_timeout_s: float = HEADER_TIMEOUT_S
    ) -> None:
        self.app = Starlette(routes=[Route("/healthz", healthz)])
        # log_config=None: uvicorn's records go through the bot's handlers (redacted, JSON when
        # asked); server_options: timeouts and limits against slow clients and floods.
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            lifespan="off",
            **server_options(header_timeout_s),
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    def add_route(self, route: BaseRoute) -> None:
        """Serve `route` from now on (Starlette reads its route list on every request)."""
        self.app.router.routes.append(route)

    def remove_route(self, route: BaseRoute) -> None:
        """Stop serving `route` (a frontend that stops takes no more updates)."""
        with suppress(ValueError):
            self.app.router.routes.remove(route)

    async def start(self) -> None:
        raise_open_files_limit()
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (port taken ...)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
