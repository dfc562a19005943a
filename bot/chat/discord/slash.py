"""Declaring slash commands, one way for every module that has some: the name and description
come from the texts (localised by bot/chat/discord/translator.py), and every command is
installed to guilds and usable in guild channels and the bot's DM unless it says otherwise.
Commands without options are a table: `/key` runs its handler, with `reporting`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from discord import app_commands

from bot.chat.discord.replies import Interaction, reporting
from bot.chat.discord.translator import command_name, command_text

Tree = app_commands.CommandTree[Any]
Handler = Callable[[Interaction], Awaitable[None]]
Decorator = Callable[[Callable[..., Any]], Any]

EVERYWHERE = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
"""Guild channels and the bot's DM (not group DMs: the bot is installed to guilds only)."""
DM_ONLY = app_commands.allowed_contexts(guilds=False, dms=True, private_channels=False)
_GUILD_INSTALL = app_commands.allowed_installs(guilds=True, users=False)


def declare(tree: Tree, key: str, *, contexts: Decorator = EVERYWHERE) -> Decorator:
    """The decorator that adds `/key` to the tree: named by `discord.name.<key>`, described by
    `discord.command.<key>`; discord.py reads its options from the callback's signature."""
    command = tree.command(
        name=command_name(f"discord.name.{key}"),
        description=command_text(f"discord.command.{key}"),
    )

    def decorate(callback: Callable[..., Any]) -> Any:
        return command(contexts(_GUILD_INSTALL(callback)))

    return decorate


def declare_plain(tree: Tree, handlers: Mapping[str, Handler]) -> None:
    """A command without options per key, in the table's order."""
    for key, handler in handlers.items():
        declare(tree, key)(_reported(handler))


def _reported(handler: Handler) -> Handler:
    async def callback(interaction: Interaction) -> None:
        await reporting(interaction, handler(interaction))

    return callback
