"""Telegram updates to service calls: commands, photos, plain text and button presses.

Handlers stay thin: they read the update, call the service and answer. A `UserError` from the
service is the answer itself: the error handler replies with it (or shows it as an alert on a
button press), so no handler repeats that plumbing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.chat.base import Core
from bot.chat.telegram.intake import PhotoIntake
from bot.chat.telegram.render import (
    CALLBACK_PREFIX,
    class_keyboard,
    confirm_keyboard,
    language_keyboard,
    link_keyboard,
    models_keyboard,
    reply_to,
    send_album,
)
from bot.core.consent import ConsentNeeded
from bot.core.errors import UserError
from bot.core.records import Action, ActionKind, ChatTarget, User
from bot.core.texts import text
from bot.core.views import help_text, models_text, started_text

log = logging.getLogger(__name__)

PLATFORM = "telegram"
Context = ContextTypes.DEFAULT_TYPE
ButtonHandler = Callable[[User, Action, ChatTarget, CallbackQuery], Awaitable[str | None]]
Callback = Callable[[Update, Context], Awaitable[None]]


def chat_target(message: Message) -> ChatTarget:
    """Where a job's status and result go: this chat, replying to this message."""
    return ChatTarget(
        PLATFORM,
        str(message.chat_id),
        is_private=message.chat.type == ChatType.PRIVATE,
        reply_to_message_id=str(message.message_id),
    )


def command_argument(text: str | None) -> str:
    """What follows `/command` (or `/command@bot`), newlines kept."""
    parts = (text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


class TelegramHandlers:
    """Every handler of the bot; `register` adds them to an Application."""

    def __init__(
        self,
        core: Core,
        intake: PhotoIntake,
        *,
        more_commands: dict[str, Callback] | None = None,
        more_buttons: dict[str, ButtonHandler] | None = None,
    ) -> None:
        """`more_commands` and `more_buttons`: the handlers of other modules (payments,
        admin commands), registered here so that the catch-all for unknown commands stays
        last."""
        self._service = core.service
        self._intake = intake
        self._more_commands = more_commands or {}
        self._buttons: dict[str, ButtonHandler] = {
            ActionKind.REROLL: self._reroll,
            ActionKind.VARIATION: self._variation,
            ActionKind.FILES: self._files,
            ActionKind.TRAIN: self._train_button,
            ActionKind.MODEL: self._model_button,
            ActionKind.DELETE: self._delete_button,
            ActionKind.IMAGINE: self._imagine_button,
            ActionKind.LANGUAGE: self._language_button,
            ActionKind.CONSENT: self._consent_button,
            **(more_buttons or {}),
        }

    def register(self, application: Application) -> None:  # type: ignore[type-arg]
        private = filters.ChatType.PRIVATE
        commands: dict[str, Callback] = {
            "start": self.help,
            "help": self.help,
            "train": self.train,
            "imagine": self.imagine,
            "models": self.models,
            "status": self.status,
            "cancel": self.cancel,
            "delete": self.delete,
            "credits": self.credits,
            "balance": self.credits,
            "language": self.language,
            **self._more_commands,
        }
        # Group -1 runs first, in the update's own task, for every update: the language is
        # set before any handler (or the error handler) says a word.
        application.add_handler(TypeHandler(Update, self.speak), group=-1)
        for name, callback in commands.items():
            application.add_handler(CommandHandler(name, callback))
        photos = filters.PHOTO | filters.Document.ALL
        application.add_handler(MessageHandler(private & photos, self.photo))
        application.add_handler(
            MessageHandler(private & filters.TEXT & ~filters.COMMAND, self.plain_text)
        )
        application.add_handler(MessageHandler(private & filters.COMMAND, self.unknown))
        application.add_handler(CallbackQueryHandler(self.button, pattern=f"^{CALLBACK_PREFIX}"))
        application.add_error_handler(self.error)

    async def speak(self, update: Update, context: Context) -> None:
        """Answer this update in its sender's language (Telegram's `language_code`, unless
        they chose one with /language)."""
        account = update.effective_user
        if account is not None:
            await self._service.speak_to(PLATFORM, str(account.id), account.language_code)
        chat = update.effective_chat
        private = account is not None and chat is not None and chat.type == ChatType.PRIVATE
        if private and (notice := await self._service.retention_notice(PLATFORM, str(account.id))):
            await context.bot.send_message(chat.id, notice)

    async def _user(self, update: Update) -> User:
        account = update.effective_user
        assert account is not None, "handled updates always have a sender"
        return await self._service.user(
            PLATFORM, str(account.id), account.full_name, account.language_code
        )

    # -- commands ----------------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        message = _message(update)
        group_text = text("telegram.help_in_group")
        if await self._private_only(message, context, group_text, "start"):
            await message.reply_text(help_text(text("telegram.photo_hint")))

    async def train(self, update: Update, context: Context) -> None:
        message = _message(update)
        group_text = text("telegram.train_in_group")
        if not await self._private_only(message, context, group_text, "train"):
            return
        user = await self._user(update)
        await self._intake.flush(message.chat_id)  # an album sent just before counts
        class_name, _, label = command_argument(message.text).partition(" ")
        if not class_name:
            await message.reply_text(
                text("telegram.pick_a_class"),
                reply_markup=await class_keyboard(self._service, user.id),
            )
            return
        await message.reply_text(await self._start_training(user, class_name, message, label))

    async def _start_training(
        self, user: User, class_name: str, message: Message, label: str | None = None
    ) -> str:
        tune = await self._service.start_training(user, class_name, chat_target(message), label)
        return started_text("train.started_message", tune)

    async def imagine(self, update: Update, context: Context) -> None:
        message = _message(update)
        prompt = command_argument(message.text)
        if not prompt:
            await message.reply_text(text("imagine.empty"))
            return
        await self._generate(update, prompt)

    async def plain_text(self, update: Update, context: Context) -> None:
        """Plain text in a private chat: what it would make and its price, with a button that
        makes it. Nothing is spent without a command or a press."""
        message = _message(update)
        user = await self._user(update)
        preview = await self._service.preview(user, message.text or "")
        keyboard = await confirm_keyboard(
            self._service, user.id, preview.button, ActionKind.IMAGINE, argument=message.text
        )
        notes = [text("note", note=note) for note in preview.notes]
        await message.reply_text("\n".join([preview.text, *notes]), reply_markup=keyboard)

    async def credits(self, update: Update, context: Context) -> None:
        user = await self._user(update)
        await _message(update).reply_text(await self._service.account(user))

    async def _generate(self, update: Update, prompt: str) -> None:
        message = _message(update)
        started = await self._service.generate(
            await self._user(update), prompt, chat_target(message)
        )
        for note in started.notes:
            await message.reply_text(text("note", note=note))

    async def models(self, update: Update, context: Context) -> None:
        user = await self._user(update)
        tunes = await self._service.list_models(user)
        keyboard = await models_keyboard(self._service, user.id, tunes, user.active_tune_id)
        await _message(update).reply_text(
            models_text(tunes, user.active_tune_id), reply_markup=keyboard
        )

    async def status(self, update: Update, context: Context) -> None:
        report = await self._service.status(await self._user(update))
        await _message(update).reply_text(report.text)

    async def cancel(self, update: Update, context: Context) -> None:
        await _message(update).reply_text(await self._service.cancel(await self._user(update)))

    async def delete(self, update: Update, context: Context) -> None:
        user = await self._user(update)
        keyboard = await confirm_keyboard(
            self._service, user.id, text("button.delete_everything"), ActionKind.DELETE
        )
        await _message(update).reply_text(text("delete.question"), reply_markup=keyboard)

    async def language(self, update: Update, context: Context) -> None:
        """`/language de` switches; `/language` alone says which and offers buttons."""
        message = _message(update)
        user = await self._user(update)
        wanted = command_argument(message.text)
        if wanted:
            await message.reply_text(await self._service.choose_language(user, wanted))
            return
        keyboard = await language_keyboard(self._service, user.id)
        await message.reply_text(self._service.language_report(user), reply_markup=keyboard)

    async def unknown(self, update: Update, context: Context) -> None:
        await _message(update).reply_text(text("telegram.unknown_command"))

    async def photo(self, update: Update, context: Context) -> None:
        await self._intake.receive(_message(update), await self._user(update))

    # -- buttons -----------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        """Look up the pressed button in the store; only its owner may use it."""
        query = update.callback_query
        assert query is not None and query.data is not None
        user = await self._user(update)
        action = await self._service.own_action(user, query.data.removeprefix(CALLBACK_PREFIX))
        message = query.message
        if not isinstance(message, Message):  # too old for Telegram to show us
            raise UserError(text("telegram.message_too_old"))
        handler = self._buttons.get(action.kind)
        if handler is None:  # a kind another platform made, or one this version no longer has
            raise UserError(text("button.gone"))
        note = await handler(user, action, chat_target(message), query)
        if note is not None:
            await query.answer(note)

    async def _reroll(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        await self._service.reroll(user, _generation(action), target)
        return text("button.reroll_started")

    async def _variation(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        index = int(action.argument or 1)
        await self._service.variation(user, _generation(action), index, target)
        return text("button.more_like_started", number=index)

    async def _imagine_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        await self._service.generate(user, action.argument or "", target)
        with contextlib.suppress(BadRequest):  # one press makes one set: the button goes
            await query.edit_message_reply_markup(None)
        return text("button.making")

    async def _files(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> None:
        files = await self._service.result_files(user, _generation(action))
        await query.answer(text("button.sending_files"))
        await send_album(
            query.get_bot(),
            target.chat_id,
            files,
            caption_text=None,
            reply=reply_to(target.reply_to_message_id),
            as_files=True,
        )

    async def _train_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        assert isinstance(query.message, Message)
        await self._intake.flush(query.message.chat_id)
        started = await self._start_training(user, action.argument or "", query.message)
        await query.edit_message_text(started)
        return text("button.training_started")

    async def _model_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        tune = await self._service.choose_model(user, int(action.argument or 0))
        fresh = await self._service.user(PLATFORM, user.platform_user_id)
        tunes = await self._service.list_models(fresh)
        await query.edit_message_text(models_text(tunes, fresh.active_tune_id))
        return text("models.now_active", model=tune.display_name)

    async def _delete_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        await query.edit_message_text(await self._service.delete_everything(user))
        return text("button.deleted")

    async def _language_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        answer = await self._service.choose_language(user, action.argument or "auto")
        await query.edit_message_text(answer)
        return answer

    async def _consent_button(
        self, user: User, action: Action, target: ChatTarget, query: CallbackQuery
    ) -> str:
        answer = await self._service.give_consent(user)
        await query.edit_message_text(answer)
        return answer

    async def _ask_consent(self, update: Update, context: Context, question: str) -> None:
        """/train (or a class button) before consent: the question, with its button."""
        chat = update.effective_chat
        assert chat is not None, "a ConsentNeeded comes from a user's own update"
        user = await self._user(update)
        keyboard = await confirm_keyboard(
            self._service, user.id, text("button.consent"), ActionKind.CONSENT
        )
        await context.bot.send_message(chat.id, question, reply_markup=keyboard)
        if update.callback_query is not None:
            await update.callback_query.answer()

    # -- errors ------------------------------------------------------------------------------

    async def error(self, update: object, context: Context) -> None:
        """Tell the user: their mistake in the service's words, ours as a short apology."""
        error = context.error
        if isinstance(error, ConsentNeeded) and isinstance(update, Update):
            await self._ask_consent(update, context, error.message)
            return
        if isinstance(error, UserError):
            answer = error.message
        else:
            log.error("handling an update failed", exc_info=error)
            answer = text("error.sorry")
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(answer[:200], show_alert=True)
            elif update.effective_message is not None:
                await update.effective_message.reply_text(answer)
        except Exception as exc:  # the chat may be gone; nothing more to do
            log.warning("could not report an error to the user: %s", type(exc).__name__)

    async def _private_only(
        self, message: Message, context: Context, group_text: str, payload: str
    ) -> bool:
        """True in a private chat; in a group, answer with a deep link into the DM instead
        (a bot can't write first to anyone)."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        url = f"https://t.me/{context.bot.username}?start={payload}"
        keyboard = link_keyboard(text("telegram.open_private_chat"), url)
        await message.reply_text(group_text, reply_markup=keyboard)
        return False


def _message(update: Update) -> Message:
    assert update.effective_message is not None, "command and message handlers get messages"
    return update.effective_message


def _generation(action: Action) -> int:
    assert action.generation_id is not None, "result buttons always name their generation"
    return action.generation_id
