"""What the bot's Telegram messages look like: captions, inline keyboards, result albums.

Buttons carry only `a:<token>` (Telegram allows 64 bytes of callback data); what a button
means (reroll, more like #n, files, a class word ...) is an action the service stored, so a
button pressed days later, after any number of restarts, still does what it said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)
from telegram.constants import FileSizeLimit, MediaGroupLimit, MessageLimit

from bot.core.records import ActionKind, GenerationRecord, TuneRecord, TuneState
from bot.core.service import AUTOMATIC_LANGUAGE, CLASS_NAMES, PhotoshootService
from bot.core.texts import languages, text

CALLBACK_PREFIX = "a:"
PHOTO_UPLOAD_LIMIT = FileSizeLimit.PHOTOSIZE_UPLOAD


def caption(prompt: str) -> str:
    """The prompt as a caption, cut to Telegram's 1024 characters."""
    limit = MessageLimit.CAPTION_LENGTH
    return prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"


def reply_to(message_id: str | int | None) -> ReplyParameters | None:
    """Reply to a message, but still send if it was deleted meanwhile."""
    if message_id is None:
        return None
    return ReplyParameters(int(message_id), allow_sending_without_reply=True)


async def action_button(
    service: PhotoshootService,
    user_id: int,
    label: str,
    kind: ActionKind,
    *,
    generation_id: int | None = None,
    argument: str | None = None,
) -> InlineKeyboardButton:
    """A button whose press is stored (the `actions` table), so it still works after a restart."""
    token = await service.new_action(user_id, kind, generation_id=generation_id, argument=argument)
    return InlineKeyboardButton(label, callback_data=CALLBACK_PREFIX + token)


async def result_keyboard(
    service: PhotoshootService, generation: GenerationRecord, count: int
) -> InlineKeyboardMarkup:
    """Reroll and full-size files on top, one "more like #n" per image below."""
    user, gen = generation.user_id, generation.id
    top = [
        await action_button(
            service, user, text("button.reroll"), ActionKind.REROLL, generation_id=gen
        ),
        await action_button(
            service, user, text("button.full_size"), ActionKind.FILES, generation_id=gen
        ),
    ]
    more = [
        await action_button(
            service,
            user,
            text("button.more_like", number=n),
            ActionKind.VARIATION,
            generation_id=gen,
            argument=str(n),
        )
        for n in range(1, count + 1)
    ]
    return InlineKeyboardMarkup([top, *(more[i : i + 5] for i in range(0, len(more), 5))])


async def class_keyboard(service: PhotoshootService, user_id: int) -> InlineKeyboardMarkup:
    """/train without a class word: one button per class."""
    buttons = [
        await action_button(
            service, user_id, text(f"class.{name}"), ActionKind.TRAIN, argument=name
        )
        for name in CLASS_NAMES
    ]
    return InlineKeyboardMarkup([buttons[i : i + 5] for i in range(0, len(buttons), 5)])


async def language_keyboard(service: PhotoshootService, user_id: int) -> InlineKeyboardMarkup:
    """/language: one button per language (named in itself), then "automatic"."""
    buttons = [
        await action_button(
            service, user_id, languages.name(code), ActionKind.LANGUAGE, argument=code
        )
        for code in languages.languages()
    ]
    automatic = await action_button(
        service,
        user_id,
        text("button.language_automatic"),
        ActionKind.LANGUAGE,
        argument=AUTOMATIC_LANGUAGE[0],
    )
    return InlineKeyboardMarkup(
        [*(buttons[i : i + 3] for i in range(0, len(buttons), 3)), [automatic]]
    )


async def models_keyboard(
    service: PhotoshootService, user_id: int, tunes: Sequence[TuneRecord], active_id: int | None
) -> InlineKeyboardMarkup | None:
    """One button per trained model that is not the active one."""
    choices = [t for t in tunes if t.state == TuneState.TRAINED and t.id != active_id]
    if not choices:
        return None
    buttons = [
        [
            await action_button(
                service,
                user_id,
                text("button.use_model", model=t.display_name),
                ActionKind.MODEL,
                argument=str(t.id),
            )
        ]
        for t in choices
    ]
    return InlineKeyboardMarkup(buttons)


async def confirm_keyboard(
    service: PhotoshootService,
    user_id: int,
    label: str,
    kind: ActionKind,
    argument: str | None = None,
) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[await action_button(service, user_id, label, kind, argument=argument)]]
    )


async def choice_keyboard(
    service: PhotoshootService, user_id: int, kind: ActionKind, choices: Sequence[tuple[str, str]]
) -> InlineKeyboardMarkup:
    """One button per (label, argument), one per row."""
    rows = [
        [await action_button(service, user_id, label, kind, argument=argument)]
        for label, argument in choices
    ]
    return InlineKeyboardMarkup(rows)


def link_keyboard(label: str, url: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, url=url)]])


async def send_album(
    bot: Bot,
    chat_id: int | str,
    files: Sequence[Path],
    *,
    caption_text: str | None,
    reply: ReplyParameters | None,
    as_files: bool = False,
    keyboard: InlineKeyboardMarkup | None = None,
) -> list[Message]:
    """Photos (or documents) in as few messages as Telegram allows, `caption_text` on the first.

    Only a lone file carries `keyboard`: Telegram refuses markup on albums, so for several
    files the caller sends the keyboard in a message of its own. Photos over Telegram's
    10 MB photo limit make the whole set go as documents (an album can't mix the two).
    """
    contents = [await asyncio.to_thread(path.read_bytes) for path in files]
    as_files = as_files or any(len(data) > PHOTO_UPLOAD_LIMIT for data in contents)
    items = list(zip(files, contents, strict=True))
    messages: list[Message] = []
    size = MediaGroupLimit.MAX_MEDIA_LENGTH
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        first = caption(caption_text) if caption_text and start == 0 else None
        if len(chunk) == 1:
            path, data = chunk[0]
            send = bot.send_document if as_files else bot.send_photo
            messages.append(
                await send(  # type: ignore[operator]
                    chat_id,
                    data,
                    caption=first,
                    filename=path.name,
                    reply_parameters=reply,
                    reply_markup=keyboard,
                )
            )
            continue
        media = [
            _media(path, data, as_files, first if index == 0 else None)
            for index, (path, data) in enumerate(chunk)
        ]
        messages += await bot.send_media_group(chat_id, media, reply_parameters=reply)
    return messages


def _media(
    path: Path, data: bytes, as_file: bool, caption_text: str | None
) -> InputMediaDocument | InputMediaPhoto:
    if as_file:
        return InputMediaDocument(data, caption=caption_text, filename=path.name)
    return InputMediaPhoto(data, caption=caption_text, filename=path.name)
