"""The Discord frontend (discord.py): see `frontend.DiscordFrontend`."""

from bot.chat.discord.frontend import DiscordFrontend

__all__ = ["DiscordFrontend"]
