"""Slash commands about the account: /credits and /buy (when credits are charged) and /admin
(when ADMIN_IDS names a Discord account; DMs only). They exist only where they do something,
so a free bot's command list stays as it was.
"""

from __future__ import annotations

from typing import Any

from discord import app_commands

from bot.chat.base import Core
from bot.chat.discord.commands import SlashCommands
from bot.chat.discord.entitlements import Entitlements
from bot.chat.discord.replies import PLATFORM, Interaction, reply, reporting
from bot.chat.discord.slash import DM_ONLY, declare, declare_plain
from bot.chat.discord.translator import command_name, command_text
from bot.core.errors import UserError
from bot.core.texts import languages, text

MAX_ADMIN_CHARS = 500


class AccountCommands:
    """/credits, /buy and /admin; see the module docstring."""

    def __init__(self, core: Core, commands: SlashCommands, entitlements: Entitlements) -> None:
        self._service = core.service
        self._admin = core.admin
        self._commands = commands
        self._entitlements = entitlements
        self._charging = core.settings.credits_enabled
        self._has_admins = any(key.startswith(f"{PLATFORM}:") for key in core.settings.admin_ids)

    def register(self, tree: app_commands.CommandTree[Any]) -> None:
        """The commands, localised like the others (see bot/chat/discord/translator.py)."""
        with languages.use_language(self._service.default_language):
            self._register(tree)

    def _register(self, tree: app_commands.CommandTree[Any]) -> None:
        if self._charging:
            declare_plain(tree, {"credits": self.credits, "buy": self.buy})
        if self._has_admins:

            @declare(tree, "admin", contexts=DM_ONLY)
            @app_commands.rename(command=command_name("discord.option.command"))
            @app_commands.describe(command=command_text("discord.command.admin.command"))
            async def admin(
                interaction: Interaction, command: app_commands.Range[str, 1, MAX_ADMIN_CHARS]
            ) -> None:
                await reporting(interaction, self.admin(interaction, command))

    async def credits(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self._commands.user(interaction)
        await reply(interaction, await self._service.account(user))

    async def buy(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self._commands.user(interaction)
        if not self._service.credits.metered(user):
            raise UserError(text("buy.not_needed"))
        if not self._entitlements.on_sale:
            raise UserError(text("buy.nothing_on_sale"))
        await reply(interaction, text("discord.buy"), view=self._entitlements.premium_buttons())

    async def admin(self, interaction: Interaction, line: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self._commands.user(interaction)
        command, _, argument = line.strip().lstrip("/").partition(" ")
        private = interaction.guild_id is None
        await reply(interaction, await self._admin.run(user, command, argument, private=private))
