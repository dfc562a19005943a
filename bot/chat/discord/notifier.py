"""How the job tracker's progress and results reach Discord (the `Notifier` of bot.core.jobs).

While a command's interaction token lives (15 minutes; we stop at 14 to stay clear of the
edge), progress edits the command's original response and results go out as its follow-ups,
within the upload limit the interaction reports. After that, or after a restart (tokens live
only in memory: they are credentials and die soon anyway), everything continues as ordinary
channel messages. Status message ids say which kind they are: `i:<id>` is an original
response, a bare id an ordinary message.

Trainings take longer than a token lives, and their news is personal: later progress and the
completion go to the user's DM; only the completion falls back to the channel where /train
was used, with a mention, when the user's DMs are closed.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import discord

from bot.chat.discord.buttons import action_view, result_buttons
from bot.chat.discord.replies import clip
from bot.chat.discord.uploads import DEFAULT_LIMIT_BYTES, Upload, batches, fit_all
from bot.core.records import Delivery, GenerationRecord, JobKind
from bot.core.service import PhotoshootService
from bot.core.texts import text

log = logging.getLogger(__name__)

ORIGINAL_PREFIX = "i:"
TOKEN_USABLE_FOR = timedelta(minutes=14)
DM_EDIT_INTERVAL_S = 1.0
CHANNEL_EDIT_INTERVAL_S = 2.0
JobKey = tuple[JobKind, int]
MISSING: Any = discord.utils.MISSING
Messageable = discord.abc.Messageable


@dataclass
class LiveResponse:
    """A command's interaction, usable for edits and follow-ups while its token lives.

    The original response shows the header (what was asked) above the latest status. Edits
    are serialised and always render the latest of both, so they may land in any order.
    """

    interaction: discord.Interaction[Any]
    header: str = ""
    status: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def alive(self) -> bool:
        return discord.utils.utcnow() - self.interaction.created_at < TOKEN_USABLE_FOR

    def render(self) -> str:
        return clip("\n".join(part for part in (self.header, self.status) if part) or "…")


class DiscordNotifier:
    """See the module docstring."""

    def __init__(self, client: discord.Client, service: PhotoshootService) -> None:
        self._client = client
        self._service = service
        self._live: dict[JobKey, LiveResponse] = {}

    async def follow(
        self, kind: JobKind, job_id: int, interaction: discord.Interaction[Any], header: str
    ) -> None:
        """Let a job just started report through this (deferred) interaction while its token
        lives, and show `header` in its response now.

        Call it right after the service recorded the job, with no await in between: the
        job's task has not run yet then, so its first status already finds the interaction.
        """
        for key in [key for key, live in self._live.items() if not live.alive()]:
            del self._live[key]
        live = LiveResponse(interaction, header)
        self._live[(kind, job_id)] = live
        await self._edit_original((kind, job_id), live)

    async def _edit_original(self, key: JobKey, live: LiveResponse) -> str | None:
        """Show the live response's header and status; None (and forgotten) if it is gone."""
        async with live.lock:
            try:
                message = await live.interaction.edit_original_response(content=live.render())
                return f"{ORIGINAL_PREFIX}{message.id}"
            except discord.HTTPException as exc:
                log.info("original response of %s %s gone (%s); using messages", *key, exc)
                self._live.pop(key, None)
                return None

    def _live_response(self, delivery: Delivery) -> LiveResponse | None:
        key = _key(delivery)
        live = self._live.get(key)
        if live is not None and not live.alive():
            del self._live[key]
            return None
        return live

    def _forget(self, delivery: Delivery) -> None:
        self._live.pop(_key(delivery), None)

    # -- Notifier ------------------------------------------------------------------------------

    def status_edit_interval(self, delivery: Delivery) -> float:
        return DM_EDIT_INTERVAL_S if delivery.is_private else CHANNEL_EDIT_INTERVAL_S

    async def update_status(self, delivery: Delivery, text: str) -> str | None:
        live = self._live_response(delivery)
        if live is not None:
            live.status = text
            if (message_id := await self._edit_original(_key(delivery), live)) is not None:
                return message_id
        channel = await self._status_channel(delivery)
        if channel is None:
            return delivery.status_message_id
        return await _send_or_edit(channel, delivery.status_message_id, text)

    async def send_text(self, delivery: Delivery, text: str) -> None:
        """A job's closing words: the tracker sends nothing more after them."""
        if delivery.job_kind == JobKind.TUNE:
            self._forget(delivery)
            await self._tell_owner(delivery, text)
            return
        await self._post(delivery, text)
        self._forget(delivery)

    async def send_images(
        self, delivery: Delivery, generation: GenerationRecord, files: Sequence[Path]
    ) -> None:
        live = self._live_response(delivery)
        limit = live.interaction.filesize_limit if live else self._channel_limit(delivery)
        uploads = await asyncio.to_thread(fit_all, files, limit)
        owner = await self._platform_user_id(generation.user_id)
        caption = text(
            "discord.result_caption",
            prompt=generation.prompt_typed,
            id=generation.id,
            seed=generation.seed,
        )
        if not delivery.is_private:  # in a channel, say whose pictures these are
            caption = f"<@{owner}> {caption}"
        mentions = discord.AllowedMentions(users=[discord.Object(int(owner))])
        for number, batch in enumerate(batches(uploads)):
            numbers = [upload.number for upload in batch]
            buttons = result_buttons(generation.id, numbers, reroll=number == 0)
            view = await action_view(self._service, generation.user_id, buttons)
            content = caption if number == 0 else None
            await self._post(delivery, content, batch=batch, view=view, mentions=mentions)
        self._forget(delivery)

    # -- helpers -------------------------------------------------------------------------------

    async def _post(
        self,
        delivery: Delivery,
        content: str | None,
        *,
        batch: Sequence[Upload] = (),
        view: discord.ui.View = MISSING,
        mentions: discord.AllowedMentions = MISSING,
    ) -> None:
        """A follow-up while the token lives; a channel message replying to the job's
        response otherwise (or when the token just died)."""
        live = self._live_response(delivery)
        if live is not None:
            try:
                await live.interaction.followup.send(
                    clip(content) if content else MISSING,
                    files=_files(batch),
                    view=view,
                    allowed_mentions=mentions,
                )
                return
            except discord.HTTPException as exc:
                if not token_refused(exc):
                    raise
                log.info("follow-up for delivery %s refused (%s); posting", delivery.id, exc)
                self._forget(delivery)
        await self._channel(delivery).send(
            clip(content) if content else None,
            files=_files(batch),
            view=view or None,
            allowed_mentions=mentions or None,
            reference=_reference(delivery),
        )

    def _channel(self, delivery: Delivery) -> discord.PartialMessageable:
        """The delivery's chat by id alone: works after a restart, without any cache."""
        return self._client.get_partial_messageable(int(delivery.chat_id))

    def _channel_limit(self, delivery: Delivery) -> int:
        channel = self._client.get_channel(int(delivery.chat_id))
        guild = getattr(channel, "guild", None)
        return guild.filesize_limit if guild is not None else DEFAULT_LIMIT_BYTES

    async def _status_channel(self, delivery: Delivery) -> Messageable | None:
        if delivery.job_kind != JobKind.TUNE:
            return self._channel(delivery)
        return await self._owner_dm(delivery)

    async def _owner_dm(self, delivery: Delivery) -> discord.DMChannel | None:
        owner = await self._service.tune_owner(delivery.job_id)
        if owner is None:
            return None
        return await self._client.create_dm(discord.Object(int(owner.platform_user_id)))

    async def _platform_user_id(self, user_id: int) -> str:
        user = await self._service.user_by_id(user_id)
        if user is None:
            raise LookupError(f"user {user_id} is gone")
        return user.platform_user_id

    async def _tell_owner(self, delivery: Delivery, text: str) -> None:
        """A training's news: by DM; in the asking channel, with a mention, if DMs are closed."""
        dm = await self._owner_dm(delivery)
        if dm is None:
            return
        try:
            await dm.send(clip(text))
            return
        except discord.Forbidden:
            log.info("DMs closed for delivery %s; telling the channel", delivery.id)
        if int(delivery.chat_id) == dm.id:
            return  # asked in that very DM: there is nowhere else to say it
        owner = dm.recipient.id if dm.recipient else None
        mentions = discord.AllowedMentions(users=[discord.Object(owner)] if owner else False)
        prefix = f"<@{owner}> " if owner else ""
        try:
            await self._channel(delivery).send(clip(prefix + text), allowed_mentions=mentions)
        except discord.Forbidden:
            log.warning("cannot reach the owner of delivery %s anywhere", delivery.id)


async def _send_or_edit(channel: Messageable, message_id: str | None, status: str) -> str | None:
    """Edit our ordinary status message, or start one (an original response can't be reused)."""
    try:
        if message_id and not message_id.startswith(ORIGINAL_PREFIX):
            message = channel.get_partial_message(int(message_id))  # type: ignore[attr-defined]
            try:
                await message.edit(content=status)
                return message_id
            except discord.NotFound:
                pass  # deleted meanwhile: start a new one
        return str((await channel.send(status)).id)
    except discord.Forbidden:
        log.info("no permission to post status in %s", getattr(channel, "id", "?"))
        return message_id


def _key(delivery: Delivery) -> JobKey:
    return delivery.job_kind, delivery.job_id


def token_refused(exc: discord.HTTPException) -> bool:
    """The interaction token died (401), or its message or channel is gone: post instead."""
    return exc.status in (401, 403, 404)


def _files(batch: Sequence[Upload]) -> list[discord.File]:
    """Fresh file objects per attempt: discord.py closes them after one request."""
    return [discord.File(io.BytesIO(upload.data), filename=upload.filename) for upload in batch]


def _reference(delivery: Delivery) -> discord.MessageReference | None:
    if delivery.reply_to_message_id is None:
        return None
    return discord.MessageReference(
        message_id=int(delivery.reply_to_message_id),
        channel_id=int(delivery.chat_id),
        fail_if_not_exists=False,
    )
