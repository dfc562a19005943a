"""The Discord frontend: a discord.py client with the slash commands, connected in the
background.

Intents: `guilds` (channel and upload-limit cache) and `dm_messages` (photos dropped into the
DM), neither privileged. Slash-command attachments and DM files never need MESSAGE_CONTENT.
The command tree is synced at every start: globally (Discord may take a while to show new
commands everywhere), or to DISCORD_DEV_GUILD_ID only, which is instant, for development.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import discord
from discord import app_commands

from bot.chat.base import Core
from bot.chat.discord.account import AccountCommands
from bot.chat.discord.buttons import ActionButton
from bot.chat.discord.commands import SlashCommands
from bot.chat.discord.entitlements import Entitlements
from bot.chat.discord.intake import PhotoIntake
from bot.chat.discord.presses import ButtonPresses
from bot.chat.discord.replies import PLATFORM, reply
from bot.chat.discord.shoots import DiscordShootNotifier, DiscordShoots, PackSelect
from bot.chat.discord.translator import CatalogTranslator
from bot.config import ConfigError
from bot.core.texts import text

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 60.0


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.dm_messages = True
    return chosen


class SpeakingTree(app_commands.CommandTree[Any]):
    """The command tree; each command runs in its user's language (set before it runs, in
    the interaction's own task, so the error handler speaks it too)."""

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        await cast(PhotoshootClient, self.client).speak(interaction)
        return True


class PhotoshootClient(discord.Client):
    """The client: routes button presses and DM photos, signals when it is connected."""

    def __init__(self) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        super().__init__(intents=intents())
        self.tree: app_commands.CommandTree[Any] = SpeakingTree(self)
        self.tree.error(self._command_failed)
        self.gateway_up = asyncio.Event()
        self.presses: ButtonPresses | None = None
        self.slash: SlashCommands | None = None
        self.purchases: Entitlements | None = None
        """(Not `entitlements`: that is discord.Client's method listing them.)"""

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ActionButton, PackSelect)  # presses on earlier messages too

    async def on_connect(self) -> None:
        self.gateway_up.set()

    async def on_ready(self) -> None:
        """Each (re)connect: credit what was bought while the bot was away."""
        if self.purchases is not None:
            try:
                await self.purchases.sweep()
            except discord.HTTPException as exc:
                log.warning("listing Discord entitlements failed: %s", exc)

    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        """A purchase of a premium SKU (DISCORD_SKU_CREDITS)."""
        if self.purchases is not None:
            await self.purchases.received(entitlement)

    async def speak(self, interaction: discord.Interaction[Any]) -> None:
        assert self.slash is not None, "set before connecting"
        await self.slash.speak(interaction)

    async def button_pressed(self, interaction: discord.Interaction[Any], token: str) -> None:
        assert self.presses is not None, "set before connecting"
        await self.speak(interaction)
        await self.presses.pressed(interaction, token)

    async def on_message(self, message: discord.Message) -> None:
        """Files a user drops into our DM are training photos; everything else is ignored."""
        if message.guild is not None or message.author.bot or not message.attachments:
            return
        assert self.slash is not None, "set before connecting"
        await self.slash.photos_dropped(message)

    async def _command_failed(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Errors our handlers did not catch themselves (option conversion and the like)."""
        log.error("slash command failed", exc_info=error)
        with contextlib.suppress(discord.HTTPException):
            await reply(interaction, text("error.sorry"))


class DiscordFrontend:
    """`await start()` then `await core.start_jobs()`; `await stop()` at the end."""

    def __init__(self, core: Core) -> None:
        settings = core.settings
        if settings.discord_bot_token is None:
            raise ConfigError(
                "The Discord frontend needs DISCORD_BOT_TOKEN (Developer Portal › your app › Bot)."
            )
        self._core = core
        self._token = settings.discord_bot_token.get_secret_value()
        self._dev_guild_id = settings.discord_dev_guild_id
        self.client = PhotoshootClient()
        self.notifier = DiscordShootNotifier(self.client, core.service)
        commands = SlashCommands(core, self.notifier, PhotoIntake(core.service))
        commands.register(self.client.tree)
        shoots = DiscordShoots(core, commands.user)
        shoots.register(self.client.tree)
        entitlements = Entitlements(core, self.client)
        AccountCommands(core, commands, entitlements).register(self.client.tree)
        self.client.slash = commands
        self.client.purchases = entitlements
        self.client.presses = ButtonPresses(core.service, self.notifier, commands, shoots.presses)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in, sync the commands, connect; returns once the gateway session is up."""
        self._core.tracker.register_notifier(PLATFORM, self.notifier)
        try:
            await self.client.login(self._token)
            await self._sync_commands()
            await self._connect()
        except discord.LoginFailure:
            await self.stop()
            raise ConfigError(
                "Discord refused DISCORD_BOT_TOKEN; copy it again from the Developer Portal "
                "(your app › Bot › Reset Token)."
            ) from None
        except BaseException:
            await self.stop()
            raise
        log.info("Discord: connected as %s", self.client.user)

    async def _connect(self) -> None:
        """Run the gateway connection as a task; wait until its session is up."""
        self._task = asyncio.create_task(self.client.connect(reconnect=True))
        waiter = asyncio.create_task(self.client.gateway_up.wait())
        done, _ = await asyncio.wait(
            {self._task, waiter}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if self._task in done:
            self._task.result()  # raises why it could not connect
            raise ConfigError("Discord closed the connection right after connecting.")
        if not done:
            raise ConfigError(f"Could not reach the Discord gateway in {CONNECT_TIMEOUT_S:.0f} s.")

    async def _sync_commands(self) -> None:
        tree = self.client.tree
        await tree.set_translator(CatalogTranslator())
        if self._dev_guild_id is None:
            synced = await tree.sync()
            log.info("Discord: %d slash commands synced globally", len(synced))
            return
        guild = discord.Object(self._dev_guild_id)
        tree.copy_global_to(guild=guild)
        synced = await tree.sync(guild=guild)
        log.info("Discord: %d slash commands synced to guild %s", len(synced), guild.id)

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
            self._task = None
