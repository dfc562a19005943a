"""Photo intake from Telegram: compressed photos and image files, single or in albums.

An album reaches the bot as one update per photo that share a `media_group_id`, with no count
and no end marker. Each photo is downloaded as soon as it arrives; the batch closes when no new
photo came for `wait_s` (or after `max_wait_s` in all), then the service checks the whole batch
at once and ONE counter message, sent when the first photo arrived, is edited to say what
happened. Photos sent one by one in quick succession are merged into a batch the same way.

File URLs hold the bot token: they are used for the download only, never logged or passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from telegram import Bot, Document, Message, PhotoSize
from telegram.error import BadRequest, TelegramError

from bot.core.photos import MAX_FILE_BYTES, Rejection, RejectReason, photo_subject
from bot.core.records import User
from bot.core.service import IncomingPhoto, PhotoshootService
from bot.core.texts import text

log = logging.getLogger(__name__)

ALBUM_WAIT_S = 1.5
ALBUM_MAX_WAIT_S = 20.0

Received = IncomingPhoto | Rejection


@dataclass
class _Batch:
    """Photos of one chat that will be summarised in one counter message."""

    user: User
    chat_id: int
    deadline: float
    hard_deadline: float
    counter_message_id: int | None = None
    downloads: list[asyncio.Task[Received]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    finisher: asyncio.Task[None] | None = None


class PhotoIntake:
    """Collects photos per (chat, album) and hands each finished batch to the service."""

    def __init__(
        self,
        service: PhotoshootService,
        bot: Bot,
        *,
        wait_s: float = ALBUM_WAIT_S,
        max_wait_s: float = ALBUM_MAX_WAIT_S,
    ) -> None:
        self._service = service
        self._bot = bot
        self._wait_s = wait_s
        self._max_wait_s = max_wait_s
        self._batches: dict[tuple[int, str], _Batch] = {}
        self._finishers: set[asyncio.Task[None]] = set()
        """Every batch's finisher until it has reported, also after it left `_batches` (when
        it stores and reports): closing waits for those too."""

    async def receive(self, message: Message, user: User) -> None:
        """Start downloading one photo and add it to its chat's open batch."""
        key = (message.chat_id, message.media_group_id or "single")
        now = asyncio.get_running_loop().time()
        batch = self._batches.get(key)
        if batch is None:
            batch = _Batch(user, message.chat_id, now, now + self._max_wait_s)
            self._batches[key] = batch
            batch.counter_message_id = await self._send_counter(message.chat_id)
            batch.finisher = asyncio.create_task(self._finish_when_quiet(key, batch))
            self._finishers.add(batch.finisher)
            batch.finisher.add_done_callback(self._finishers.discard)
        batch.downloads.append(asyncio.create_task(self._download(message)))
        batch.deadline = min(now + self._wait_s, batch.hard_deadline)

    async def flush(self, chat_id: int) -> None:
        """Close the chat's open batches now (before /train, so it sees every photo)."""
        await self._close([b for (chat, _), b in self._batches.items() if chat == chat_id])

    async def close(self) -> None:
        """Close every open batch and wait for those being stored (at shutdown: photos already
        received are not lost, and no batch writes to a store closed under it)."""
        await self._close(list(self._batches.values()))
        await asyncio.gather(*self._finishers, return_exceptions=True)

    async def _close(self, batches: list[_Batch]) -> None:
        for batch in batches:
            batch.hard_deadline = 0
            batch.wake.set()
        await asyncio.gather(*(b.finisher for b in batches if b.finisher), return_exceptions=True)

    async def _finish_when_quiet(self, key: tuple[int, str], batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        while (left := min(batch.deadline, batch.hard_deadline) - loop.time()) > 0:
            batch.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.wake.wait(), left)
        del self._batches[key]  # photos arriving from now on open a new batch
        try:
            summary = await self._store(batch)
        except Exception:
            log.exception("storing photos of chat %s failed", batch.chat_id)
            summary = text("photos.save_failed")
        await self._report(batch, summary)

    async def _store(self, batch: _Batch) -> str:
        received = await asyncio.gather(*batch.downloads)
        photos = [item for item in received if isinstance(item, IncomingPhoto)]
        result = await self._service.add_photos(batch.user, photos)
        for item in received:
            if isinstance(item, Rejection):
                result.reject(item.reason, item.message, item.filename)
        return result.summary()

    async def _send_counter(self, chat_id: int) -> int | None:
        try:
            return (
                await self._bot.send_message(chat_id, text("telegram.receiving_photos"))
            ).message_id
        except TelegramError as exc:  # the summary then comes as a new message
            log.warning("could not send the photo counter to chat %s: %s", chat_id, exc)
            return None

    async def _report(self, batch: _Batch, summary: str) -> None:
        try:
            if batch.counter_message_id is not None:
                await self._bot.edit_message_text(
                    summary, chat_id=batch.chat_id, message_id=batch.counter_message_id
                )
            else:
                await self._bot.send_message(batch.chat_id, summary)
        except TelegramError as exc:
            log.warning("could not report photos to chat %s: %s", batch.chat_id, exc)

    async def _download(self, message: Message) -> Received:
        """The photo's bytes, or why it can't be had (checked before downloading, when possible)."""
        media, filename = _media_of(message)
        subject = photo_subject(filename)
        if media.file_size and media.file_size > MAX_FILE_BYTES:
            return _too_big(subject, media.file_size, filename)
        try:
            telegram_file = await media.get_file()
            data = await telegram_file.download_as_bytearray()
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                return _too_big(subject, media.file_size, filename)
            return _not_downloaded(subject, filename, exc)
        except TelegramError as exc:
            return _not_downloaded(subject, filename, exc)
        return IncomingPhoto(bytes(data), filename)


def _media_of(message: Message) -> tuple[PhotoSize | Document, str | None]:
    """The largest size of a compressed photo (the last one), or the file as sent."""
    if message.photo:
        return message.photo[-1], None
    assert message.document is not None, "the handler only passes photos and documents"
    return message.document, message.document.file_name


def _too_big(subject: str, size: int | None, filename: str | None) -> Rejection:
    if size:
        size_text = text("telegram.megabytes", megabytes=size / 1024 / 1024)
    else:
        size_text = text("telegram.over_20_mb")
    message = text("telegram.photo_too_big", subject=subject, size=size_text)
    return Rejection(RejectReason.FILE_TOO_LARGE, message, filename)


def _not_downloaded(subject: str, filename: str | None, exc: TelegramError) -> Rejection:
    # The class name only: a message could quote the file URL, which holds the bot token.
    log.warning("a photo download failed: %s", type(exc).__name__)
    message = text("photo.not_downloaded", subject=subject)
    return Rejection(RejectReason.CORRUPT, message, filename)
