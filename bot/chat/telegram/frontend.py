"""The Telegram frontend: builds the python-telegram-bot Application and runs it.

Long polling by default; with PUBLIC_URL set, Telegram delivers to our webhook instead, a
route of the bot's one HTTP server (on CALLBACK_PORT, beside the backend callbacks). The
Bot API and file URLs come from settings, so a local Bot API server (or the tests' fake) can
stand in for api.telegram.org. Outgoing calls go through PTB's AIORateLimiter (Telegram allows
about 30 messages/s, 20 a minute per group); a 429 is waited out and the call retried.
"""

from __future__ import annotations

import logging

from starlette.routing import Route
from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    Update,
)
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, BaseRateLimiter

from bot.chat.base import Core
from bot.chat.telegram.admin import AdminCommands
from bot.chat.telegram.handlers import PLATFORM, TelegramHandlers
from bot.chat.telegram.intake import ALBUM_WAIT_S, PhotoIntake
from bot.chat.telegram.payments import StarsPayments
from bot.chat.telegram.processor import PerChatUpdateProcessor
from bot.chat.telegram.shoots import TelegramShootNotifier, TelegramShoots
from bot.chat.telegram.transport import AiohttpRequest
from bot.chat.telegram.webhook import WEBHOOK_PATH, webhook_route, webhook_secret
from bot.config import ConfigError
from bot.core.texts import languages, text

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 5
CONNECTION_POOL_SIZE = 64
POOL_TIMEOUT_S = 30.0
"""Under a burst, a call waits this long for a free connection rather than fail the update."""
LONG_POLL_TIMEOUT_S = 30
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.PRE_CHECKOUT_QUERY]
PRIVATE_COMMANDS = {
    "imagine": "command.imagine",
    "packs": "command.packs",
    "shoot": "command.shoot",
    "train": "command.train",
    "models": "command.models",
    "status": "command.status",
    "cancel": "command.cancel",
    "delete": "command.delete",
    "credits": "command.credits",
    "buy": "command.buy",
    "language": "command.language",
    "help": "command.help",
}
GROUP_COMMANDS = {
    "imagine": "command.imagine",
    "packs": "command.packs",
    "train": "command.train_in_group",
    "status": "command.status",
    "language": "command.language",
    "help": "command.help",
}
"""The command menus Telegram shows: each command and the text key of its description."""
PAID_ONLY = ("credits", "buy")
"""Shown only when the bot charges credits."""


def command_menu(commands: dict[str, str]) -> list[BotCommand]:
    """The menu in the current language."""
    return [BotCommand(name, text(key)) for name, key in commands.items()]


def menu_languages(default: str) -> dict[str | None, str]:
    """Telegram's `language_code` of each menu (None: everyone else) -> our language.

    Telegram takes two-letter codes only, so `pt_BR` serves every `pt` user; where two of our
    languages share a code, the first keeps it."""
    menus: dict[str | None, str] = {None: default}
    for code in languages.languages():
        menus.setdefault(code.split("_")[0], code)
    return menus


class TelegramFrontend:
    """`await start()` then `await core.start_jobs()`; `await stop()` at the end.

    Stopping drains what was received: queued updates are handled and open photo batches
    are stored before the Application shuts down.
    """

    def __init__(
        self,
        core: Core,
        *,
        album_wait_s: float = ALBUM_WAIT_S,
        rate_limiter: BaseRateLimiter | None = None,  # type: ignore[type-arg]
    ) -> None:
        settings = core.settings
        if settings.telegram_bot_token is None:
            raise ConfigError("The Telegram frontend needs TELEGRAM_BOT_TOKEN (from @BotFather).")
        self._core = core
        self._token = settings.telegram_bot_token.get_secret_value()
        self.application: Application = (  # type: ignore[type-arg]
            ApplicationBuilder()
            .token(self._token)
            .base_url(settings.telegram_api_url)
            .base_file_url(settings.telegram_file_url)
            .rate_limiter(rate_limiter or AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
            .concurrent_updates(PerChatUpdateProcessor())
            .request(AiohttpRequest(CONNECTION_POOL_SIZE, pool_timeout=POOL_TIMEOUT_S))
            .get_updates_request(AiohttpRequest(1))
            .build()
        )
        bot = self.application.bot
        self.intake = PhotoIntake(core.service, bot, wait_s=album_wait_s)
        payments = StarsPayments(core, bot)
        admin = AdminCommands(core)
        shoots = TelegramShoots(core)
        TelegramHandlers(
            core,
            self.intake,
            more_commands={**payments.commands, **admin.commands, **shoots.commands},
            more_buttons={**payments.buttons, **shoots.buttons},
        ).register(self.application)
        payments.register(self.application)
        self.notifier = TelegramShootNotifier(bot, core.service)
        self._webhook: Route | None = None
        if settings.public_url:
            self._webhook = webhook_route(self.application, webhook_secret(self._token))

    async def start(self) -> None:
        """Connect (getMe), register the notifier and commands, start receiving updates."""
        application = self.application
        await application.initialize()
        self._core.tracker.register_notifier(PLATFORM, self.notifier)
        await self._set_command_menus()
        await application.start()
        if self._webhook is not None:
            self._core.web.add_route(self._webhook)
            url = f"{(self._core.settings.public_url or '').rstrip('/')}{WEBHOOK_PATH}"
            await application.bot.set_webhook(
                url, secret_token=webhook_secret(self._token), allowed_updates=ALLOWED_UPDATES
            )
            log.info("Telegram: receiving updates by webhook")
        else:
            assert application.updater is not None
            await application.updater.start_polling(
                poll_interval=0, timeout=LONG_POLL_TIMEOUT_S, allowed_updates=ALLOWED_UPDATES
            )
            log.info("Telegram: receiving updates by long polling as @%s", application.bot.username)

    async def _set_command_menus(self) -> None:
        """The command menus in every language we speak, and in the default for the rest;
        /credits and /buy only when the bot charges credits."""
        bot = self.application.bot
        private = {
            name: key
            for name, key in PRIVATE_COMMANDS.items()
            if self._core.settings.credits_enabled or name not in PAID_ONLY
        }
        menus = (
            (private, BotCommandScopeAllPrivateChats()),
            (GROUP_COMMANDS, BotCommandScopeAllGroupChats()),
        )
        for telegram_code, language in menu_languages(self._core.service.default_language).items():
            for commands, scope in menus:
                with languages.use_language(language):
                    menu = command_menu(commands)
                await bot.set_my_commands(menu, scope, language_code=telegram_code)

    async def stop(self) -> None:
        application = self.application
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if self._webhook is not None:
            self._core.web.remove_route(self._webhook)  # no new updates from now on
        if application.running:
            await application.stop()  # handles the updates already queued
        await self.intake.close()
        await application.shutdown()
