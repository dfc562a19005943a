"""Training photos from Discord: slash-command attachments and files dropped into the DM.

The bot downloads every attachment itself and hands the service bytes: attachment URLs are
signed and expire, so a URL passed on would break hours later (and is not ours to share).
Cheap refusals (too big, not an image) happen before downloading.

`/train` with too few photos arms a follow-up: the next photos the user drops into the DM
start that training as soon as the set is big enough. The armed class lives in memory only;
after a restart the photos are still kept and the user sends /train again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import discord

from bot.core.photos import (
    MAX_FILE_BYTES,
    IntakeBatch,
    Rejection,
    RejectReason,
    file_too_large,
    photo_subject,
)
from bot.core.records import User
from bot.core.service import IncomingPhoto, PhotoshootService
from bot.core.texts import text

log = logging.getLogger(__name__)

ARMED_FOR_S = 30 * 60
Received = IncomingPhoto | Rejection


@dataclass(frozen=True)
class ArmedTraining:
    """A /train waiting for more photos in the DM."""

    class_name: str
    label: str | None
    expires_at: float


class PhotoIntake:
    """Downloads attachments into the user's pending photo set; remembers armed trainings."""

    def __init__(self, service: PhotoshootService) -> None:
        self._service = service
        self._armed: dict[int, ArmedTraining] = {}

    async def add(self, user: User, attachments: Sequence[discord.Attachment]) -> IntakeBatch:
        """Download and check the attachments; the batch's `summary()` is the user's answer."""
        received = await asyncio.gather(*(download(item) for item in attachments))
        photos = [item for item in received if isinstance(item, IncomingPhoto)]
        batch = await self._service.add_photos(user, photos)
        for item in received:
            if isinstance(item, Rejection):
                batch.reject(item.reason, item.message, item.filename)
        return batch

    def arm(self, user: User, class_name: str, label: str | None) -> None:
        expires = asyncio.get_running_loop().time() + ARMED_FOR_S
        self._armed[user.id] = ArmedTraining(class_name, label, expires)

    def disarm(self, user: User) -> None:
        self._armed.pop(user.id, None)

    def armed(self, user: User) -> ArmedTraining | None:
        """The user's waiting /train, unless it expired."""
        armed = self._armed.get(user.id)
        if armed is not None and armed.expires_at < asyncio.get_running_loop().time():
            del self._armed[user.id]
            return None
        return armed


async def download(attachment: discord.Attachment) -> Received:
    """The attachment's bytes, or why it can't be used."""
    name = attachment.filename
    if attachment.size > MAX_FILE_BYTES:
        refused = file_too_large(attachment.size, name)
        return Rejection(refused.reason, refused.message, name)
    subject = photo_subject(name)
    content_type = (attachment.content_type or "").split(";")[0]
    if content_type and not content_type.startswith("image/"):
        message = text("photo.not_a_photo", subject=subject, content_type=content_type)
        return Rejection(RejectReason.NOT_AN_IMAGE, message, name)
    try:
        return IncomingPhoto(await attachment.read(), name)
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        # The class name only: the error text could quote the signed URL.
        log.warning("an attachment download failed: %s", type(exc).__name__)
        message = text("photo.not_downloaded", subject=subject)
        return Rejection(RejectReason.CORRUPT, message, name)
