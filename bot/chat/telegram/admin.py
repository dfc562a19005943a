"""Admin commands in Telegram: /grant, /take, /ban, /unban, /user, /stats, /refund (and /admin
for the list). `bot.core.admin` checks who may use them (ADMIN_IDS, private chats only) and
answers; this module only passes the command on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.constants import ChatType

from bot.chat.base import Core
from bot.chat.telegram.handlers import PLATFORM, Context, command_argument
from bot.core.admin import COMMANDS


class AdminCommands:
    """One handler for every admin command; see the module docstring."""

    def __init__(self, core: Core) -> None:
        self._service = core.service
        self._admin = core.admin

    @property
    def commands(self) -> dict[str, Callable[[Update, Context], Awaitable[None]]]:
        return {name: self.run for name in (*COMMANDS, "admin")}

    async def run(self, update: Update, context: Context) -> None:
        message = update.effective_message
        account = update.effective_user
        assert message is not None and account is not None
        actor = await self._service.user(PLATFORM, str(account.id), account.full_name)
        command = (message.text or "").split(maxsplit=1)[0].lstrip("/").partition("@")[0]
        answer = await self._admin.run(
            actor,
            command,
            command_argument(message.text),
            private=message.chat.type == ChatType.PRIVATE,
        )
        await message.reply_text(answer)
