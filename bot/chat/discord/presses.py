"""What pressing a button does. The service says what the button means and whose it is.

Presses by anyone but the button's owner are refused with a message only the presser sees.
Result buttons (reroll, more like #n, upscale #n) start a new job whose deferred "thinking"
response becomes its status message, exactly like /imagine; model and delete buttons edit the
message they sit on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.chat.discord.commands import SlashCommands
from bot.chat.discord.notifier import DiscordNotifier
from bot.chat.discord.replies import Interaction, chat_target, reply, reporting
from bot.core.errors import UserError
from bot.core.records import Action, ActionKind, ChatTarget, JobKind, User
from bot.core.service import GenerationStarted, PhotoshootService
from bot.core.texts import text
from bot.core.views import models_text

JobStarter = Callable[[User, Action, ChatTarget], Awaitable[GenerationStarted]]
PressHandler = Callable[[Interaction, User, Action], Awaitable[None]]


class ButtonPresses:
    """Dispatches a press to the handler of its action kind."""

    def __init__(
        self,
        service: PhotoshootService,
        notifier: DiscordNotifier,
        commands: SlashCommands,
        more: dict[str, PressHandler] | None = None,
    ) -> None:
        """`more`: the press handlers of other modules (shoots), by action kind."""
        self._service = service
        self._notifier = notifier
        self._commands = commands
        self._jobs: dict[str, tuple[str, JobStarter]] = {
            ActionKind.REROLL: ("discord.new_set_of", self._reroll),
            ActionKind.VARIATION: ("discord.more_like", self._variation),
            ActionKind.UPSCALE: ("discord.upscaling", self._upscale),
            ActionKind.MORE: ("discord.more_like_this", self._more_like_shot),
        }
        """What each result button starts, and the text key of the header it shows."""
        self._edits: dict[str, Callable[[User, Action], Awaitable[str]]] = {
            ActionKind.MODEL: self._use_model,
            ActionKind.DELETE: self._delete,
            ActionKind.CONSENT: self._consent,
        }
        self._more = more or {}

    async def pressed(self, interaction: Interaction, token: str) -> None:
        await reporting(interaction, self._pressed(interaction, token))

    async def _pressed(self, interaction: Interaction, token: str) -> None:
        user = await self._commands.user(interaction)
        action = await self._service.own_action(user, token)  # refusals are not deferred yet
        if action.kind in self._jobs:
            await self._start_job(interaction, user, action)
        elif (edit := self._edits.get(action.kind)) is not None:
            await interaction.response.defer()  # the message with the button gets the answer
            await reply(interaction, await edit(user, action))
        elif (handler := self._more.get(action.kind)) is not None:
            await handler(interaction, user, action)
        else:  # a kind another platform made, or one this version no longer has
            raise UserError(text("button.gone"))

    async def _use_model(self, user: User, action: Action) -> str:
        tune = await self._service.choose_model(user, int(action.argument or 0))
        tunes = await self._service.list_models(user)
        now_active = text("models.now_active", model=tune.display_name)
        return f"{models_text(tunes, tune.id)}\n{now_active}"

    async def _delete(self, user: User, action: Action) -> str:
        return await self._service.delete_everything(user)

    async def _consent(self, user: User, action: Action) -> str:
        return await self._service.give_consent(user)

    async def _start_job(self, interaction: Interaction, user: User, action: Action) -> None:
        response = await interaction.response.defer(thinking=True)
        target = chat_target(interaction, reply_to=response.message_id if response else None)
        key, start = self._jobs[action.kind]
        started = await start(user, action, target)
        asked = text(key, number=action.argument, prompt=started.generation.prompt_typed)
        header = "\n".join([asked, *started.notes])
        await self._notifier.follow(JobKind.GENERATION, started.generation.id, interaction, header)

    async def _reroll(self, user: User, action: Action, target: ChatTarget) -> GenerationStarted:
        return await self._service.reroll(user, _generation(action), target)

    async def _variation(self, user: User, action: Action, target: ChatTarget) -> GenerationStarted:
        return await self._service.variation(
            user, _generation(action), int(action.argument or 1), target
        )

    async def _upscale(self, user: User, action: Action, target: ChatTarget) -> GenerationStarted:
        return await self._service.upscale(
            user, _generation(action), int(action.argument or 1), target
        )

    async def _more_like_shot(
        self, user: User, action: Action, target: ChatTarget
    ) -> GenerationStarted:
        return await self._service.more_like_shot(user, int(action.argument or 0), target)


def _generation(action: Action) -> int:
    assert action.generation_id is not None, "result buttons always name their generation"
    return action.generation_id
