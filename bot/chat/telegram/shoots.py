"""Shoots on Telegram (issue 14): the /packs picker, the confirm button, and their delivery.

`/packs` answers with one inline button per pack; a press shows the pack with its confirm
button ("Make 28 images"), and that press starts the shoot. Buttons are stored actions, so
they work after a restart. A shoot's images arrive as albums (up to 10 per message) as they
finish, each album followed by a message with a heart (a like on the backend, pressed again:
taken back) and a "more like this" button per shot; at the end the ZIP of every image comes as
documents under Telegram's 50 MB upload limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import FileSizeLimit
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.chat.base import Core
from bot.chat.telegram.handlers import PLATFORM, ButtonHandler, command_argument
from bot.chat.telegram.notifier import TelegramNotifier, chat_gone_is_final, with_retries
from bot.chat.telegram.render import (
    action_button,
    choice_keyboard,
    confirm_keyboard,
    reply_to,
    send_album,
)
from bot.core import shoots
from bot.core.records import Action, ActionKind, ChatTarget, Delivery, ShootRecord, User
from bot.core.shoot_jobs import ShotFiles
from bot.core.texts import text

Context = ContextTypes.DEFAULT_TYPE


class TelegramShoots:
    """/packs, /shoot and the buttons of shoots; see the module docstring."""

    def __init__(self, core: Core) -> None:
        self._service = core.service

    @property
    def commands(self) -> dict[str, Callable[[Update, Context], Awaitable[None]]]:
        return {"packs": self.packs, "shoot": self.shoot}

    @property
    def buttons(self) -> dict[str, ButtonHandler]:
        return {
            ActionKind.PACK: self._pack_pressed,
            ActionKind.SHOOT: self._shoot_pressed,
            ActionKind.LIKE: self._like_pressed,
            ActionKind.MORE: self._more_pressed,
        }

    async def packs(self, update: Update, context: Context) -> None:
        """The packs for the class of the user's model, one button each."""
        message, user = await self._sender(update)
        model, offers = await self._service.pack_offers(user)
        choices = [(offer.line, str(offer.pack.id)) for offer in offers]
        keyboard = (
            await choice_keyboard(self._service, user.id, ActionKind.PACK, choices)
            if choices
            else None
        )
        await message.reply_text(shoots.offers_text(offers, model), reply_markup=keyboard)

    async def shoot(self, update: Update, context: Context) -> None:
        """`/shoot <pack>`: the pack shown with its confirm button (nothing runs yet)."""
        message, user = await self._sender(update)
        wanted = command_argument(message.text)
        if not wanted:
            await self.packs(update, context)
            return
        await self._offer(message, user, wanted)

    async def _offer(self, message: Message, user: User, wanted: str) -> None:
        offer = await self._service.pick_pack(user, wanted)
        keyboard = await confirm_keyboard(
            self._service, user.id, offer.confirm_label, ActionKind.SHOOT, str(offer.pack.id)
        )
        await message.reply_text(offer.details, reply_markup=keyboard)

    async def _sender(self, update: Update) -> tuple[Message, User]:
        message, account = update.effective_message, update.effective_user
        assert message is not None and account is not None
        user = await self._service.user(PLATFORM, str(account.id), account.full_name)
        return message, user

    # -- buttons -----------------------------------------------------------------------------

    async def _pack_pressed(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> None:
        assert isinstance(query.message, Message)
        await self._offer(query.message, user, action.argument or "")
        await query.answer()

    async def _shoot_pressed(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        started = await self._service.start_shoot(user, action.argument or "", target)
        with contextlib.suppress(BadRequest):  # one press makes one shoot: the button goes
            await query.edit_message_reply_markup(None)
        assert isinstance(query.message, Message)
        await query.message.reply_text(started.text)
        return text("button.making")

    async def _like_pressed(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        liked = await self._service.like_shot(user, int(action.argument or 0))
        message = query.message
        if isinstance(message, Message) and message.reply_markup is not None:
            markup = _with_heart(message.reply_markup, query.data or "", liked)
            with contextlib.suppress(BadRequest):
                await query.edit_message_reply_markup(markup)
        return text("shoot.liked" if liked else "shoot.unliked")

    async def _more_pressed(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        await self._service.more_like_shot(user, int(action.argument or 0), target)
        return text("button.making")


def _with_heart(markup: InlineKeyboardMarkup, pressed: str, liked: bool) -> InlineKeyboardMarkup:
    """The keyboard with the pressed heart filled (or emptied); its number stays."""
    rows = []
    for row in markup.inline_keyboard:
        buttons = []
        for button in row:
            if button.callback_data == pressed:
                number = str(button.text).split(" ", 1)[-1]
                label = text("button.liked" if liked else "button.like", number=number)
                button = InlineKeyboardButton(label, callback_data=pressed)
            buttons.append(button)
        rows.append(buttons)
    return InlineKeyboardMarkup(rows)


class TelegramShootNotifier(TelegramNotifier):
    """The Telegram notifier, with the delivery of shoots (bot.core.shoot_jobs.ShootNotifier)."""

    archive_limit = FileSizeLimit.FILESIZE_UPLOAD
    """Bots upload documents up to 50 MB (photos 10 MB: send_album turns bigger ones into
    documents)."""

    def archive_limit_bytes(self, delivery: Delivery) -> int:
        return int(self.archive_limit)

    async def send_shots(
        self, delivery: Delivery, shoot: ShootRecord, shots: Sequence[ShotFiles]
    ) -> None:
        with chat_gone_is_final(delivery):
            files = [path for item in shots for path in item.files]
            reply = reply_to(delivery.reply_to_message_id)
            await with_retries(
                lambda: send_album(
                    self._bot,
                    delivery.chat_id,
                    files,
                    caption_text=shoot.pack_title,
                    reply=reply,
                )
            )
            keyboard = await self._shot_keyboard(shoot, shots)
            await with_retries(
                lambda: self._bot.send_message(
                    delivery.chat_id, text("telegram.shot_buttons"), reply_markup=keyboard
                )
            )

    async def _shot_keyboard(
        self, shoot: ShootRecord, shots: Sequence[ShotFiles]
    ) -> InlineKeyboardMarkup:
        """Per shot: its heart and "more like this", named by the shot's number."""
        rows = []
        for item in shots:
            argument = str(item.shot.id)
            heart = "button.liked" if item.shot.liked else "button.like"
            rows.append(
                [
                    await action_button(
                        self._service,
                        shoot.user_id,
                        text(heart, number=item.number),
                        ActionKind.LIKE,
                        argument=argument,
                    ),
                    await action_button(
                        self._service,
                        shoot.user_id,
                        text("button.more_like_this", number=item.number),
                        ActionKind.MORE,
                        argument=argument,
                    ),
                ]
            )
        return InlineKeyboardMarkup(rows)

    async def send_archive(
        self, delivery: Delivery, shoot: ShootRecord, parts: Sequence[Path]
    ) -> None:
        with chat_gone_is_final(delivery):
            for part in parts:
                data = await asyncio.to_thread(part.read_bytes)
                await with_retries(
                    lambda data=data, part=part: self._bot.send_document(
                        delivery.chat_id,
                        data,
                        filename=part.name,
                        caption=shoot.pack_title,
                        reply_parameters=reply_to(delivery.reply_to_message_id),
                    )
                )
