"""Slash commands (docs/architecture.md §4) and photos dropped into the DM, as service calls.

Handlers stay thin: defer at once (Discord's 3-second deadline), call the service, answer.
`/train` is private wherever it is used: in a DM it is a DM, in a guild every answer is
ephemeral, so nobody else ever sees the photos or the training. `/imagine` answers in public
where it was asked; its deferred response becomes the job's status message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bot.chat.base import Core
from bot.chat.discord.buttons import ButtonSpec, action_view
from bot.chat.discord.intake import PhotoIntake
from bot.chat.discord.notifier import DiscordNotifier
from bot.chat.discord.replies import PLATFORM, Interaction, chat_target, reply, reporting
from bot.chat.discord.slash import declare, declare_plain
from bot.chat.discord.translator import command_name, command_text
from bot.core.errors import UserError
from bot.core.photos import MIN_PHOTOS
from bot.core.records import ActionKind, ChatTarget, JobKind, TuneRecord, TuneState, User
from bot.core.service import AUTOMATIC_LANGUAGE, CLASS_NAMES
from bot.core.texts import languages, text
from bot.core.views import help_text, models_text, started_text

log = logging.getLogger(__name__)

Photo = discord.Attachment | None
MAX_PROMPT_CHARS = 1000


def _started_text(tune: TuneRecord) -> str:
    return started_text("train.started_dm", tune)


class SlashCommands:
    """Every command of the bot; `register` adds them to a command tree. Each handler defers
    first; `reporting` turns what goes wrong afterwards into the answer."""

    def __init__(self, core: Core, notifier: DiscordNotifier, intake: PhotoIntake) -> None:
        self._service = core.service
        self._notifier = notifier
        self._intake = intake

    async def user(self, interaction: Interaction) -> User:
        """The user who interacts (their Discord locale kept, for news sent later)."""
        account, locale = interaction.user, interaction.locale.value
        return await self._service.user(PLATFORM, str(account.id), account.display_name, locale)

    async def speak(self, interaction: Interaction) -> None:
        """Answer the interaction in its user's language (Discord's `locale`, unless they chose
        one with /language). An interaction is always meant for the bot, so its user is
        recorded with the locale: messages dropped into the DM later carry none."""
        with contextlib.suppress(UserError):  # ALLOWED_IDS: the handler itself refuses
            await self.user(interaction)
        account = interaction.user
        await self._service.speak_to(PLATFORM, str(account.id), interaction.locale.value)
        if notice := await self._service.retention_notice(PLATFORM, str(account.id)):
            with contextlib.suppress(discord.HTTPException):  # DMs closed: told nothing
                await account.send(notice)  # by DM: a guild channel must not read it

    def register(self, tree: app_commands.CommandTree[Any]) -> None:
        """The commands, with their descriptions' base in DEFAULT_LANGUAGE (see translator)."""
        with languages.use_language(self._service.default_language):
            self._register(tree)

    def _register(self, tree: app_commands.CommandTree[Any]) -> None:
        """The commands as closures: discord.py reads their options from the signatures."""
        class_choices = [
            app_commands.Choice(name=command_text(f"class.{name}"), value=name)
            for name in CLASS_NAMES
        ]
        language_choices = [
            app_commands.Choice(name=languages.name(code), value=code)
            for code in languages.languages()
        ]
        automatic = command_text("button.language_automatic")
        language_choices.append(app_commands.Choice(name=automatic, value=AUTOMATIC_LANGUAGE[0]))

        @declare(tree, "help")
        async def help_(interaction: Interaction) -> None:
            await reply(interaction, help_text(text("discord.photo_hint")))

        @declare(tree, "train")
        @app_commands.rename(
            class_name=command_name("discord.option.class"),
            name=command_name("discord.option.name"),
        )
        @app_commands.describe(
            class_name=command_text("discord.command.train.class"),
            name=command_text("discord.command.train.name"),
            photo1=command_text("discord.command.train.photo"),
        )
        @app_commands.choices(class_name=class_choices)
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

        @declare(tree, "imagine")
        @app_commands.rename(prompt=command_name("discord.option.prompt"))
        @app_commands.describe(prompt=command_text("discord.command.imagine.prompt"))
        async def imagine(
            interaction: Interaction, prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS]
        ) -> None:
            await reporting(interaction, self.imagine(interaction, prompt))

        declare_plain(
            tree,
            {
                "models": self.models,
                "status": self.status,
                "cancel": self.cancel,
                "delete": self.delete,
            },
        )

        @declare(tree, "language")
        @app_commands.rename(language=command_name("discord.option.language"))
        @app_commands.describe(language=command_text("discord.command.language.language"))
        @app_commands.choices(language=language_choices)
        async def language(interaction: Interaction, language: str | None = None) -> None:
            await reporting(interaction, self.language(interaction, language))

    # -- commands ------------------------------------------------------------------------------

    async def train(
        self,
        interaction: Interaction,
        class_name: str,
        label: str | None,
        attachments: Sequence[discord.Attachment],
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before downloading
        user = await self.user(interaction)
        if (question := await self._service.consent_needed(user)) is not None:  # issue 15
            confirm = ButtonSpec(text("button.consent"), ActionKind.CONSENT)
            view = await action_view(self._service, user.id, [confirm])
            await reply(interaction, question, view=view)
            return
        summary = ""
        if attachments:
            summary = (await self._intake.add(user, attachments)).summary() + "\n"
        count = await self._service.pending_photo_count(user)
        if count < MIN_PHOTOS:
            self._intake.arm(user, class_name, label)
            in_dm = interaction.guild_id is None
            key = "discord.needs_photos_here" if in_dm else "discord.needs_photos_in_dm"
            needs = text(
                key,
                count=count,
                min_photos=MIN_PHOTOS,
                missing=MIN_PHOTOS - count,
                class_name=class_name,
            )
            await reply(interaction, summary + needs)
            return
        target = chat_target(interaction, private=True)  # a DM, or ephemeral in a guild
        tune = await self.start_training(user, class_name, label, target)
        await self._notifier.follow(
            JobKind.TUNE, tune.id, interaction, summary + _started_text(tune)
        )

    async def start_training(
        self, user: User, class_name: str, label: str | None, target: ChatTarget
    ) -> TuneRecord:
        self._intake.disarm(user)
        return await self._service.start_training(user, class_name, target, label)

    async def imagine(self, interaction: Interaction, prompt: str) -> None:
        response = await interaction.response.defer(thinking=True)  # public: results are shown
        user = await self.user(interaction)
        target = chat_target(interaction, reply_to=response.message_id if response else None)
        started = await self._service.generate(user, prompt, target)
        asked = text("discord.asked", prompt=started.generation.prompt_typed)
        header = "\n".join([asked, *started.notes])
        await self._notifier.follow(JobKind.GENERATION, started.generation.id, interaction, header)

    async def models(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction)
        tunes = await self._service.list_models(user)
        choices = [
            ButtonSpec(
                text("button.use_model", model=tune.display_name),
                ActionKind.MODEL,
                argument=str(tune.id),
            )
            for tune in tunes
            if tune.state == TuneState.TRAINED and tune.id != user.active_tune_id
        ]
        view = await action_view(self._service, user.id, choices[:25]) if choices else None
        await reply(interaction, models_text(tunes, user.active_tune_id), view=view)

    async def status(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self._service.status(await self.user(interaction))
        await reply(interaction, report.text)

    async def cancel(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction)
        self._intake.disarm(user)
        await reply(interaction, await self._service.cancel(user))

    async def delete(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction)
        confirm = ButtonSpec(
            text("button.delete_everything"), ActionKind.DELETE, style=discord.ButtonStyle.danger
        )
        view = await action_view(self._service, user.id, [confirm])
        await reply(interaction, text("delete.question"), view=view)

    async def language(self, interaction: Interaction, wanted: str | None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = await self.user(interaction)
        if wanted:
            await reply(interaction, await self._service.choose_language(user, wanted))
        else:
            await reply(interaction, self._service.language_report(user))

    # -- photos dropped into the DM ------------------------------------------------------------

    async def photos_dropped(self, message: discord.Message) -> None:
        """Files in a DM join the pending set; an armed /train starts once there are enough.

        A message carries no locale: the user's language is the one stored (their choice, or
        the locale of their last interaction)."""
        await self._service.speak_to(PLATFORM, str(message.author.id))
        try:
            answer = await self._photos_dropped(message)
        except UserError as exc:
            answer = exc.message
        except Exception:
            log.exception("storing photos from a DM failed")
            answer = text("error.sorry")
        await message.reply(answer, mention_author=False)

    async def _photos_dropped(self, message: discord.Message) -> str:
        author = message.author
        user = await self._service.user(PLATFORM, str(author.id), author.display_name)
        summary = (await self._intake.add(user, message.attachments)).summary()
        armed = self._intake.armed(user)
        if armed is None or await self._service.pending_photo_count(user) < MIN_PHOTOS:
            return summary
        target = ChatTarget(PLATFORM, str(message.channel.id), reply_to_message_id=str(message.id))
        tune = await self.start_training(user, armed.class_name, armed.label, target)
        return f"{summary}\n{_started_text(tune)}"
