"""Shoots on Discord (issue 14): the /packs select menu, the confirm button, their delivery.

`/packs` answers (only to its user) with a select menu of the packs for their model's class; a
choice shows the pack with its confirm button ("Make 28 images"), and that press starts the
shoot in the channel it was pressed in. `/shoot <pack>` goes straight to the confirm. The menu
and the buttons carry store tokens only (`PackSelect`, `ActionButton`), so they work after a
restart. Images arrive in messages of up to 10 files within the upload limit, each message
with a heart (a like on the backend; pressed again, taken back) and "more like this" per shot;
at the end the ZIP of every image comes in parts that fit the limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import discord
from discord import app_commands

from bot.chat.base import Core
from bot.chat.discord.buttons import BUTTONS_PER_ROW, ButtonSpec, PressReceiver, action_view
from bot.chat.discord.notifier import DiscordNotifier
from bot.chat.discord.replies import Interaction, chat_target, reply, reporting
from bot.chat.discord.slash import declare
from bot.chat.discord.translator import command_name, command_text
from bot.chat.discord.uploads import Upload, batches, fit
from bot.core import shoots
from bot.core.records import Action, ActionKind, Delivery, ShootRecord, User
from bot.core.shoot_jobs import ShotFiles
from bot.core.texts import languages, text

SELECT_PREFIX = "pss:"
MAX_SELECT_OPTIONS = 25
MAX_OPTION_LABEL = 100
UserGetter = Callable[[Interaction], Awaitable[User]]


class PackSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=re.escape(SELECT_PREFIX) + r"(?P<token>[A-Za-z0-9_-]{4,64})",
):
    """The /packs menu; a choice hands its store token to the client, like a button press
    (the chosen pack id is in the interaction's `values`)."""

    def __init__(self, token: str, options: Sequence[discord.SelectOption] = ()) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"{SELECT_PREFIX}{token}",
                options=list(options) or [discord.SelectOption(label="…")],
                placeholder=text("discord.pick_pack"),
            )
        )
        self.token = token

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> PackSelect:
        return cls(match["token"])

    async def callback(self, interaction: Interaction) -> None:
        await cast(PressReceiver, interaction.client).button_pressed(interaction, self.token)


class DiscordShoots:
    """/packs, /shoot and what their menu and buttons do; see the module docstring."""

    def __init__(self, core: Core, user: UserGetter) -> None:
        self._service = core.service
        self._user = user

    def register(self, tree: app_commands.CommandTree[Any]) -> None:
        with languages.use_language(self._service.default_language):
            self._register(tree)

    def _register(self, tree: app_commands.CommandTree[Any]) -> None:
        @declare(tree, "packs")
        async def packs(interaction: Interaction) -> None:
            await reporting(interaction, self.packs(interaction))

        @declare(tree, "shoot")
        @app_commands.rename(pack=command_name("discord.option.pack"))
        @app_commands.describe(pack=command_text("discord.command.shoot.pack"))
        async def shoot(interaction: Interaction, pack: str) -> None:
            await reporting(interaction, self.shoot(interaction, pack))

    @property
    def presses(self) -> dict[str, Callable[[Interaction, User, Action], Awaitable[None]]]:
        return {
            ActionKind.PACK: self._pack_chosen,
            ActionKind.SHOOT: self._confirmed,
            ActionKind.LIKE: self._like,
        }

    async def packs(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self._user(interaction)
        model, offers = await self._service.pack_offers(user)
        view = None
        if offers:
            token = await self._service.new_action(user.id, ActionKind.PACK)
            options = [
                discord.SelectOption(label=offer.line[:MAX_OPTION_LABEL], value=str(offer.pack.id))
                for offer in offers[:MAX_SELECT_OPTIONS]
            ]
            view = discord.ui.View(timeout=None)
            view.add_item(PackSelect(token, options))
        await reply(interaction, shoots.offers_text(offers, model), view=view)

    async def shoot(self, interaction: Interaction, wanted: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._offer(interaction, await self._user(interaction), wanted)

    async def _offer(self, interaction: Interaction, user: User, wanted: str) -> None:
        """The pack with its confirm button, in place of what was there."""
        offer = await self._service.pick_pack(user, wanted)
        confirm = ButtonSpec(
            offer.confirm_label,
            ActionKind.SHOOT,
            argument=str(offer.pack.id),
            style=discord.ButtonStyle.primary,
        )
        view = await action_view(self._service, user.id, [confirm])
        await reply(interaction, offer.details, view=view)

    async def _pack_chosen(self, interaction: Interaction, user: User, action: Action) -> None:
        await interaction.response.defer()
        values = (interaction.data or {}).get("values") or [""]
        await self._offer(interaction, user, str(values[0]))

    async def _confirmed(self, interaction: Interaction, user: User, action: Action) -> None:
        await interaction.response.defer()
        started = await self._service.start_shoot(
            user, action.argument or "", chat_target(interaction)
        )
        await reply(interaction, started.text, view=discord.ui.View())  # the button goes

    async def _like(self, interaction: Interaction, user: User, action: Action) -> None:
        """The heart fills (or empties) on the message; the presser alone reads why."""
        liked = await self._service.like_shot(user, int(action.argument or 0))
        if interaction.message is not None:
            await interaction.response.edit_message(view=_with_heart(interaction, liked))
        await interaction.followup.send(
            text("shoot.liked" if liked else "shoot.unliked"), ephemeral=True
        )


def _with_heart(interaction: Interaction, liked: bool) -> discord.ui.View:
    """The pressed message's buttons, the pressed heart filled or emptied (its number and its
    custom_id, so its store token, stay)."""
    assert interaction.message is not None
    view = discord.ui.View.from_message(interaction.message, timeout=None)
    pressed = (interaction.data or {}).get("custom_id")
    for item in view.children:
        if isinstance(item, discord.ui.Button) and item.custom_id == pressed:
            number = (item.label or "").split(" ", 1)[-1]
            item.label = text("button.liked" if liked else "button.like", number=number)
    return view


class DiscordShootNotifier(DiscordNotifier):
    """The Discord notifier, with the delivery of shoots (bot.core.shoot_jobs.ShootNotifier)."""

    def archive_limit_bytes(self, delivery: Delivery) -> int:
        return self._channel_limit(delivery)

    async def send_shots(
        self, delivery: Delivery, shoot: ShootRecord, shots: Sequence[ShotFiles]
    ) -> None:
        limit = self._channel_limit(delivery)
        uploads = await asyncio.to_thread(_shot_uploads, shots, limit)
        shot_of = {id(upload): item for item, upload in uploads}
        for number, batch in enumerate(batches([upload for _, upload in uploads])):
            shown = {shot_of[id(upload)].shot.id: shot_of[id(upload)] for upload in batch}
            view = await action_view(
                self._service, shoot.user_id, _shot_buttons(list(shown.values()))
            )
            content = shoot.pack_title if number == 0 else None
            await self._post(delivery, content, batch=batch, view=view)

    async def send_archive(
        self, delivery: Delivery, shoot: ShootRecord, parts: Sequence[Path]
    ) -> None:
        for part in parts:
            data = await asyncio.to_thread(part.read_bytes)
            await self._post(delivery, shoot.pack_title, batch=[Upload(0, part.name, data)])


def _shot_uploads(shots: Sequence[ShotFiles], limit: int) -> list[tuple[ShotFiles, Upload]]:
    """Every image of the shots, named `<shot>-<image>` (a JPEG when too big to send as is)."""
    uploads = []
    for item in shots:
        for index, path in enumerate(item.files, start=1):
            upload = fit(item.number, path, limit)
            name = f"{item.number}-{index}{Path(upload.filename).suffix}"
            uploads.append((item, dataclasses.replace(upload, filename=name)))
    return uploads


def _shot_buttons(shots: Sequence[ShotFiles]) -> list[ButtonSpec]:
    """A heart per shot on the first rows, "more like this" per shot below."""
    specs = []
    for kind, key, first_row in (
        (ActionKind.LIKE, "button.like", 0),
        (ActionKind.MORE, "button.more_like_this", 2),
    ):
        specs += [
            ButtonSpec(
                text(key, number=item.number),
                kind,
                argument=str(item.shot.id),
                row=first_row + position // BUTTONS_PER_ROW,
            )
            for position, item in enumerate(shots)
        ]
    return specs
