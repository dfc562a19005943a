"""Wiring: builds the store, the backend client, the job tracker and the service from Settings.

The only module that knows every part; frontends receive a ready `Core` (bot.chat.base) and
register their notifiers before the tracker starts, so resumed jobs find their chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx
from dotenv import load_dotenv

from backends.astria import AstriaClient
from backends.base import Backend
from bot.callbacks import callback_route
from bot.chat.base import Core, Frontend
from bot.config import ConfigError, Settings
from bot.core.admin import AdminDesk, Bans
from bot.core.consent import ConsentTextError, read_consent_text
from bot.core.credits import Credits, CreditsConfig, Prices
from bot.core.jobs import JobTracker, TrackerConfig
from bot.core.ledger import Ledger
from bot.core.limits import Limits
from bot.core.payments import Package, Payments
from bot.core.retention import Retention, RetentionConfig
from bot.core.safety import BlockList, BlockListError
from bot.core.service import PhotoshootService, ServiceConfig
from bot.core.store import Store
from bot.core.texts import languages
from bot.warmup import warm_up
from bot.web import WebServer

if TYPE_CHECKING:
    from backends.local import WorkerConfig

log = logging.getLogger(__name__)

IN_PROCESS_STOP_GRACE_S = 10.0
"""WORKER_STOP_GRACE_S's default for the worker inside the bot (see `in_process_worker`)."""


def worker_config(settings: Settings, *, api_key: str | None) -> WorkerConfig:
    """The worker's configuration: its own names (WORKER_DEVICE, SDXL_EXTRA_MODELS ...) from
    the environment and `.env` (the environment wins), the shared ones from Settings.

    Call after importing `backends.local` succeeded (it needs the worker extra)."""
    from backends.local import WorkerConfig

    load_dotenv(".env", override=False)
    try:
        base = WorkerConfig.from_env()
    except ValueError as exc:
        raise ConfigError(f"Bad configuration: {exc}") from None
    return dataclasses.replace(
        base, data_dir=settings.data_dir / "worker", sdxl_model=settings.sdxl_model, api_key=api_key
    )


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """Run our GPU worker inside this process and hand back an HTTP transport to it."""
    try:
        from backends.local import create_worker
    except ImportError as exc:
        raise ConfigError(
            "No image backend is configured. Either set ASTRIA_API_KEY (hosted Astria), "
            "or LOCAL_WORKER_URL (a running `photoshoot-bot worker`), or install the worker "
            "to run it in-process: pip install torch==2.13.0 -e '.[worker]' "
            f"(missing: {exc.name})."
        ) from None
    config = worker_config(settings, api_key=None)
    if "WORKER_STOP_GRACE_S" not in os.environ:  # the bot's unit allows 30 s, not the worker's 90
        config = dataclasses.replace(config, stop_grace_s=IN_PROCESS_STOP_GRACE_S)
    worker = create_worker(config)
    await worker.start()
    try:
        yield httpx.ASGITransport(app=worker.app, client=("127.0.0.1", 0))
    finally:
        await worker.stop()


def worker_threads_left() -> bool:
    """Whether the in-process worker left a GPU step running when it stopped (it waits only
    `WORKER_STOP_GRACE_S` for a step that checks no abort flag; its job stays queued)."""
    threads = sys.modules.get("backends.local.threads")
    return bool(threads and threads.left_behind())


@contextlib.asynccontextmanager
async def backend_client(settings: Settings) -> AsyncIterator[Backend]:
    """The Astria client, aimed at hosted Astria, a remote worker, or the in-process worker."""
    if settings.backend == "astria":
        if settings.astria_api_key is None:
            raise ConfigError("BACKEND=astria needs ASTRIA_API_KEY (from astria.ai, API section).")
        client = AstriaClient(settings.astria_api_key.get_secret_value(), settings.astria_api_url)
        async with client:
            yield client
        return
    key = settings.worker_api_key or settings.astria_api_key
    secret = key.get_secret_value() if key else None
    if settings.local_worker_url:
        async with AstriaClient(secret, settings.local_worker_url) as client:
            yield client
        return
    async with (
        in_process_worker(settings) as transport,
        AstriaClient(None, "http://worker.local", transport=transport) as client,
    ):
        yield client


def credits_config(settings: Settings) -> CreditsConfig:
    """Who is charged what, from CREDITS, the prices and the limits (bot/core/credits.py)."""
    return CreditsConfig(
        enabled=settings.credits_enabled,
        prices=Prices(training=settings.price_training, image=settings.price_image),
        limits=Limits(
            running_prompts=settings.limit_running_prompts,
            running_trainings=settings.limit_running_trainings,
            images_per_day=settings.limit_images_per_day,
            trainings_per_day=settings.limit_trainings_per_day,
        ),
        exempt=settings.never_charged,
        can_buy=bool(settings.credit_packages or settings.discord_sku_credits),
    )


def default_language(settings: Settings) -> str:
    """DEFAULT_LANGUAGE as a catalog the bot has (`pt-BR` -> `pt_BR`); else a ConfigError.
    Checked here, not in Settings: the catalogs belong to bot.core, above the configuration."""
    try:
        return languages.require(settings.default_language)
    except ValueError as exc:
        raise ConfigError(f"Bad configuration: DEFAULT_LANGUAGE: {exc}") from None


def retention_config(settings: Settings) -> RetentionConfig:
    """RETENTION_DAYS and KEEP_TRAINING_PHOTOS (bot/core/retention.py)."""
    return RetentionConfig(
        days=settings.retention_days, keep_training_photos=settings.keep_training_photos
    )


def prompt_blocklist(settings: Settings) -> BlockList:
    """PROMPT_BLOCKLIST's rules (the packaged default when unset); a bad file stops the start."""
    try:
        return BlockList.load(settings.prompt_blocklist)
    except BlockListError as exc:
        raise ConfigError(f"Bad configuration: PROMPT_BLOCKLIST: {exc}") from None


def operator_consent_text(settings: Settings) -> str | None:
    """CONSENT_TEXT_FILE's wording (None when unset); an unreadable file stops the start."""
    try:
        return read_consent_text(settings.consent_text_file)
    except ConsentTextError as exc:
        raise ConfigError(f"Bad configuration: CONSENT_TEXT_FILE: {exc}") from None


@contextlib.asynccontextmanager
async def running_core(settings: Settings) -> AsyncIterator[Core]:
    """Everything but the frontends; closes it all in reverse order. With PUBLIC_URL set, the
    HTTP server (callbacks, /healthz, and the Telegram webhook once that frontend starts)
    listens on CALLBACK_PORT."""
    language = default_language(settings)
    store = await Store.open(settings.database_path, settings.data_dir)
    try:
        async with backend_client(settings) as backend:
            bans = Bans(store)
            await bans.load()
            ledger = Ledger(store, free_credits=settings.free_credits)
            retention = Retention(store, backend, retention_config(settings))
            tracker = JobTracker(
                store,
                backend,
                TrackerConfig(
                    poll_interval_s=settings.poll_interval_s,
                    public_url=settings.public_url,
                    default_language=language,
                ),
                ledger=ledger,
                after_trained=retention.forget_training_photos,
            )
            service = PhotoshootService(
                store,
                backend,
                tracker,
                ServiceConfig(
                    lora_strength=settings.lora_strength,
                    is_allowed=settings.is_allowed,
                    is_banned=bans.__contains__,
                    default_language=language,
                    blocklist=prompt_blocklist(settings),
                    consent_required=settings.consent_required,
                    consent_text=operator_consent_text(settings),
                ),
                Credits(ledger, credits_config(settings)),
                retention,
            )
            payments = Payments(
                service.credits,
                packages=[Package(credits, stars) for credits, stars in settings.credit_packages],
                sku_credits=settings.discord_sku_credits,
                may_buy=lambda account: settings.is_allowed(account) and account not in bans,
            )
            admin = AdminDesk(store, service, payments, bans, settings.admin_ids.__contains__)
            web = WebServer(port=settings.callback_port)
            web.add_route(callback_route(tracker))
            if settings.public_url:
                await web.start()
            sweeping = asyncio.create_task(retention.run_daily(), name="retention")
            try:
                yield Core(settings, store, backend, tracker, service, web, payments, admin)
            finally:
                sweeping.cancel()
                await asyncio.gather(sweeping, return_exceptions=True)
                await tracker.stop()
                await web.stop()
    finally:
        await store.close()


def chat_frontends(core: Core) -> list[Frontend]:
    """One frontend per platform whose token is set (imported only when configured)."""
    frontends: list[Frontend] = []
    if core.settings.telegram_bot_token:
        from bot.chat.telegram import TelegramFrontend

        frontends.append(TelegramFrontend(core))
    if core.settings.discord_bot_token:
        from bot.chat.discord import DiscordFrontend

        frontends.append(DiscordFrontend(core))
    return frontends


@contextlib.asynccontextmanager
async def serving(core: Core, frontends: Sequence[Frontend]) -> AsyncIterator[Core]:
    """Start the frontends, then resume jobs (every notifier is registered by then); on the
    way out stop the jobs first, so results being sent still have their frontend, then the
    frontends in reverse order."""
    started: list[Frontend] = []
    try:
        for frontend in frontends:
            await frontend.start()
            started.append(frontend)
        await core.start_jobs()
        warm_up()
        # Everything made so far (modules, libraries, the started frontends) lives as long as
        # the process: out of the collector's sight, a full collection no longer walks it. At
        # 300 updates/s those walks took 50-95 ms each, the bot's longest stalls.
        gc.freeze()
        yield core
    finally:
        gc.unfreeze()  # what is left of it is garbage-collected as usual again
        await core.tracker.stop()
        for frontend in reversed(started):
            await frontend.stop()
