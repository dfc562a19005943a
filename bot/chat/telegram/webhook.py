"""Webhook mode (PUBLIC_URL set): Telegram POSTs updates to us instead of being polled.

A small Starlette app puts each update on the Application's own update queue, so webhook
and polling run the very same handlers (PTB's own webhook server would need tornado). The
secret token Telegram echoes in a header keeps strangers from injecting updates.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from contextlib import suppress

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "x-telegram-bot-api-secret-token"


def webhook_secret(token: str) -> str:
    """Stable across restarts (Telegram keeps the webhook), and not the token itself."""
    return hashlib.sha256(f"webhook:{token}".encode()).hexdigest()[:48]


def webhook_route(application: Application, secret: str) -> Route:  # type: ignore[type-arg]
    """The endpoint; mountable into another Starlette app sharing one public port."""

    async def receive(request: Request) -> Response:
        if request.headers.get(SECRET_HEADER) != secret:
            return Response(status_code=403)
        try:
            update = Update.de_json(await request.json(), application.bot)
        except ValueError:
            return Response(status_code=400)
        await application.update_queue.put(update)
        return Response()

    return Route(WEBHOOK_PATH, receive, methods=["POST"])


class WebhookServer:
    """uvicorn serving the webhook route as a task of the bot's event loop."""

    def __init__(self, route: Route, host: str, port: int) -> None:
        config = uvicorn.Config(
            Starlette(routes=[route]), host=host, port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (port taken ...)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self.server.should_exit = True
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
