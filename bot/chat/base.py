"""What every chat frontend is given (`Core`) and what it offers the wiring (`Frontend`).

Both live here, below the frontends and the wiring alike: `bot.app` builds a `Core` and
starts frontends; the frontends import this module, never `bot.app`, so no import circle.
Frontends talk to the service (use cases, users, buttons) and the tracker (their notifier,
job waits); the store is here for the wiring and the tests, not for chat adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backends.base import Backend
from bot.config import Settings
from bot.core.admin import AdminDesk
from bot.core.jobs import JobTracker
from bot.core.payments import Payments
from bot.core.service import PhotoshootService
from bot.core.store import Store
from bot.web import WebServer


@dataclass
class Core:
    """The running parts a frontend works with, built by `bot.app.running_core`."""

    settings: Settings
    store: Store
    backend: Backend
    tracker: JobTracker
    service: PhotoshootService
    web: WebServer
    """The HTTP server on CALLBACK_PORT (running when PUBLIC_URL is set): mount webhooks here."""
    payments: Payments
    """Selling credits: Telegram Stars invoices, Discord SKUs, refunds."""
    admin: AdminDesk
    """Admin commands (ADMIN_IDS, private chats)."""

    async def start_jobs(self) -> None:
        """Resume unfinished jobs; call after every frontend registered its notifier."""
        await self.tracker.start()


class Frontend(Protocol):
    """A chat platform adapter: `start()` registers its notifier and begins receiving."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
