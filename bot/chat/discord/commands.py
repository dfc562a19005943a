"""Slash commands (design.md §4) and photos dropped into the DM, as service calls.

Handlers stay thin: defer at once (Discord's 3-second deadline), call the service, answer.
`/train` is private wherever it is used: in a DM it is a DM, in a guild every answer is
ephemeral, so nobody else ever sees the photos or the training. `/imagine` answers in public
where it was asked; its deferred response becomes the job's status message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bot.app import Core
from bot.chat.discord.buttons import ButtonSpec, action_view
from bot.chat.discord.intake import PhotoIntake
from bot.chat.discord.notifier import DiscordNotifier
from bot.chat.discord.replies import (
    PLATFORM,
    SORRY,
    Interaction,
    chat_target,
    reply,
    reporting,
)
from bot.core.photos import MIN_PHOTOS
from bot.core.service import CLASS_NAMES, UserError
from bot.core.store import ChatTarget, TuneRecord, User
from bot.core.texts import help_text, models_text

log = logging.getLogger(__name__)

PHOTO_HINT = (
    "Attach them to /train (up to 10 at a time; only you see them), or drop them into a DM with me."
)
Photo = discord.Attachment | None
MAX_PROMPT_CHARS = 1000
CLASS_CHOICES = [app_commands.Choice(name=name, value=name) for name in CLASS_NAMES]


def _started_text(tune: TuneRecord) -> str:
    return f"Training {tune.display_name} started. It takes a while; I'll DM you when it's done."


class SlashCommands:
    """Every command of the bot; `register` adds them to a command tree. Each handler defers
    first; `reporting` turns what goes wrong afterwards into the answer."""

    def __init__(self, core: Core, notifier: DiscordNotifier, intake: PhotoIntake) -> None:
        self._service = core.service
        self._store = core.store
        self._notifier = notifier
        self._intake = intake

    async def user(self, account: discord.abc.User) -> User:
        return await self._service.user(PLATFORM, str(account.id), account.display_name)

    def register(self, tree: app_commands.CommandTree[Any]) -> None:
        """The commands as closures: discord.py reads their options from the signatures."""
        contexts = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
        installs = app_commands.allowed_installs(guilds=True, users=False)

        @tree.command(name="help", description="What this bot does and how to use it")
        @contexts
        @installs
        async def help_(interaction: Interaction) -> None:
            await reply(interaction, help_text(PHOTO_HINT))

        @tree.command(name="train", description="Train your model from photos of you")
        @app_commands.rename(class_name="class")
        @app_commands.describe(
            class_name="what is in the photos",
            name="a name for this model (optional)",
            photo1="4-20 photos of you, at least 1024 px; more in photo2 … photo10 or the DM",
        )
        @app_commands.choices(class_name=CLASS_CHOICES)
        @contexts
        @installs
        async def train(
            interaction: Interaction,
            class_name: str,
            name: str | None = None,
            photo1: Photo = None,
            photo2: Photo = None,
            photo3: Photo = None,
            photo4: Photo = None,
            photo5: Photo = None,
            photo6: Photo = None,
            photo7: Photo = None,
            photo8: Photo = None,
            photo9: Photo = None,
            photo10: Photo = None,
        ) -> None:
            photos = (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8, photo9)
            attachments = [photo for photo in (*photos, photo10) if photo is not None]
            await reporting(interaction, self.train(interaction, class_name, name, attachments))

        @tree.command(name="imagine", description="Make pictures of you")
        @app_commands.describe(prompt="what to make, e.g. astronaut on the moon")
        @contexts
        @installs
        async def imagine(
            interaction: Interaction, prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS]
        ) -> None:
            await reporting(interaction, self.imagine(interaction, prompt))

        @tree.command(name="models", description="Your models; choose the active one")
        @contexts
        @installs
        async def models(interaction: Interaction) -> None:
            await reporting(interaction, self.models(interaction))

        @tree.command(name="status", description="What is running")
        @contexts
        @installs
        async def status(interaction: Interaction) -> None:
            await reporting(interaction, self.status(interaction))

        @tree.command(name="cancel", description="Stop running jobs, or drop photos not trained")
        @contexts
        @installs
        async def cancel(interaction: Interaction) -> None:
            await reporting(interaction, self.cancel(interaction))

        @tree.command(name="delete", description="Delete your photos, models and images")
        @contexts
        @installs
        async def delete(interaction: Interaction) -> None:
            await reporting(interaction, self.delete(interaction))

    # -- commands ------------------------------------------------------------------------------

    async def train(
        self,
        interaction: Interaction,
        class_name: str,
        label: str | None,
        attachments: Sequence[discord.Attachment],
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before downloading
        user = await self.user(interaction.user)
        summary = ""
        if attachments:
            summary = (await self._intake.add(user, attachments)).summary() + "\n"
        count = await self._service.pending_photo_count(user)
        if count < MIN_PHOTOS:
            self._intake.arm(user, class_name, label)
            where = "here" if interaction.guild_id is None else "into a DM with me"
            await reply(
                interaction,
                f"{summary}You have {count} of the {MIN_PHOTOS} photos training needs. Drop "
                f"{MIN_PHOTOS - count} or more {where} (as files, at least 1024 px) and I'll "
                f"start training your {class_name} model right away.",
            )
            return
        target = chat_target(interaction, private=True)  # a DM, or ephemeral in a guild
        tune = await self.start_training(user, class_name, label, target)
        await self._notifier.follow("tune", tune.id, interaction, summary + _started_text(tune))

    async def start_training(
        self, user: User, class_name: str, label: str | None, target: ChatTarget
    ) -> TuneRecord:
        self._intake.disarm(user)
        return await self._service.start_training(user, class_name, target, label)

    async def imagine(self, interaction: Interaction, prompt: str) -> None:
        response = await interaction.response.defer(thinking=True)  # public: results are shown
        user = await self.user(interaction.user)
        target = chat_target(interaction, reply_to=response.message_id if response else None)
        started = await self._service.generate(user, prompt, target)
        header = "\n".join([f"“{started.generation.prompt_typed}”", *started.notes])
        await self._notifier.follow("generation", started.generation.id, interaction, header)

    async def models(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction.user)
        tunes = await self._service.list_models(user)
        choices = [
            ButtonSpec(f"Use {tune.display_name}", "model", argument=str(tune.id))
            for tune in tunes
            if tune.state == "trained" and tune.id != user.active_tune_id
        ]
        view = await action_view(self._store, user.id, choices[:25]) if choices else None
        await reply(interaction, models_text(tunes, user.active_tune_id), view=view)

    async def status(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self._service.status(await self.user(interaction.user))
        await reply(interaction, report.text)

    async def cancel(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction.user)
        self._intake.disarm(user)
        await reply(interaction, await self._service.cancel(user))

    async def delete(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction.user)
        confirm = ButtonSpec("Yes, delete everything", "delete", style=discord.ButtonStyle.danger)
        await reply(
            interaction,
            "This deletes all your photos, models and images, here and on the image service.",
            view=await action_view(self._store, user.id, [confirm]),
        )

    # -- photos dropped into the DM ------------------------------------------------------------

    async def photos_dropped(self, message: discord.Message) -> None:
        """Files in a DM join the pending set; an armed /train starts once there are enough."""
        try:
            text = await self._photos_dropped(message)
        except UserError as exc:
            text = str(exc)
        except Exception:
            log.exception("storing photos from a DM failed")
            text = SORRY
        await message.reply(text, mention_author=False)

    async def _photos_dropped(self, message: discord.Message) -> str:
        user = await self.user(message.author)
        summary = (await self._intake.add(user, message.attachments)).summary()
        armed = self._intake.armed(user)
        if armed is None or await self._service.pending_photo_count(user) < MIN_PHOTOS:
            return summary
        target = ChatTarget(PLATFORM, str(message.channel.id), reply_to_message_id=str(message.id))
        tune = await self.start_training(user, armed.class_name, armed.label, target)
        return f"{summary}\n{_started_text(tune)}"
