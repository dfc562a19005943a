"""Webhook mode (PUBLIC_URL set): Telegram POSTs updates to us instead of being polled.

A Starlette route, served by the bot's one HTTP server (`bot.web`, on CALLBACK_PORT beside
the backend callbacks), puts each update on the Application's own update queue, so webhook
and polling run the very same handlers (PTB's own webhook server would need tornado). The
secret token Telegram echoes in a header keeps strangers from injecting updates.
"""

from __future__ import annotations

import hashlib
import logging

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
    """The endpoint, for the bot's HTTP server (`bot.web.WebServer.add_route`)."""

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
