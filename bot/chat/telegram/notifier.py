"""The tracker's view of Telegram: status messages, closing texts and result albums.

Every call here is safe to repeat (the tracker retries a delivery after a restart). Flood
control (429) is waited out by the rate limiter; a dropped connection is retried a few times
here, because a result the tracker could not hand over waits for the next start otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from telegram import Bot, Message
from telegram.error import BadRequest, Forbidden, NetworkError

from bot.chat.telegram.render import reply_to, result_keyboard, send_album
from bot.core.records import Delivery, GenerationRecord, JobKind
from bot.core.service import PhotoshootService
from bot.core.texts import text

log = logging.getLogger(__name__)

T = TypeVar("T")
PRIVATE_EDIT_INTERVAL_S = 1.0
GROUP_EDIT_INTERVAL_S = 3.0
NETWORK_RETRIES = 3


async def with_retries(call: Callable[[], Awaitable[T]], retries: int = NETWORK_RETRIES) -> T:
    """Run a Bot API call again when the connection failed (not when Telegram said no)."""
    for attempt in range(retries):
        try:
            return await call()
        except BadRequest:
            raise
        except NetworkError as exc:
            log.warning("Telegram call failed (%s); retry %d", type(exc).__name__, attempt + 1)
            await asyncio.sleep(2**attempt)
    return await call()


class TelegramNotifier:
    """Implements bot.core.jobs.Notifier for the platform "telegram"."""

    def __init__(self, bot: Bot, service: PhotoshootService) -> None:
        self._bot = bot
        self._service = service

    def status_edit_interval(self, delivery: Delivery) -> float:
        """Groups allow 20 messages a minute, so their status is edited less often."""
        return PRIVATE_EDIT_INTERVAL_S if delivery.is_private else GROUP_EDIT_INTERVAL_S

    async def update_status(self, delivery: Delivery, text: str) -> str | None:
        with chat_gone_is_final(delivery):
            return await self._update_status(delivery, text)
        return None

    async def _update_status(self, delivery: Delivery, text: str) -> str | None:
        if delivery.status_message_id is not None:
            try:
                await with_retries(
                    lambda: self._bot.edit_message_text(
                        text, chat_id=delivery.chat_id, message_id=int(delivery.status_message_id)
                    )
                )
                return delivery.status_message_id
            except BadRequest as exc:
                if "not modified" in exc.message:
                    return delivery.status_message_id
                log.info("status message of %s %s is gone; sending a new one", *_job(delivery))
        message = await self._send(delivery, text)
        return str(message.message_id)

    async def send_text(self, delivery: Delivery, text: str) -> None:
        with chat_gone_is_final(delivery):
            await self._send(delivery, text)

    async def send_images(
        self, delivery: Delivery, generation: GenerationRecord, files: Sequence[Path]
    ) -> None:
        """The album with the prompt as caption, replying to the prompt; buttons under it."""
        with chat_gone_is_final(delivery):
            await self._send_images(delivery, generation, files)

    async def _send_images(
        self, delivery: Delivery, generation: GenerationRecord, files: Sequence[Path]
    ) -> None:
        keyboard = await result_keyboard(self._service, generation, len(files))
        reply = reply_to(delivery.reply_to_message_id)
        sent = await with_retries(
            lambda: send_album(
                self._bot,
                delivery.chat_id,
                files,
                caption_text=generation.prompt_typed,
                reply=reply,
                keyboard=keyboard if len(files) == 1 else None,
            )
        )
        if len(files) > 1:
            await with_retries(
                lambda: self._bot.send_message(
                    delivery.chat_id,
                    text("telegram.result_hint", id=generation.id),
                    reply_markup=keyboard,
                    reply_parameters=reply_to(sent[0].message_id),
                )
            )

    async def _send(self, delivery: Delivery, text: str) -> Message:
        return await with_retries(
            lambda: self._bot.send_message(
                delivery.chat_id, text, reply_parameters=reply_to(delivery.reply_to_message_id)
            )
        )


@contextlib.contextmanager
def chat_gone_is_final(delivery: Delivery) -> Iterator[None]:
    """403 Forbidden: the user blocked the bot, or it was removed from the group. Nothing can
    reach that chat any more, so the message is dropped (and the delivery counts as done)
    instead of failing again on every restart."""
    try:
        yield
    except Forbidden as exc:
        kind, job_id = _job(delivery)
        log.warning("chat of %s %s is closed to the bot (%s); message dropped", kind, job_id, exc)


def _job(delivery: Delivery) -> tuple[JobKind, int]:
    return delivery.job_kind, delivery.job_id
