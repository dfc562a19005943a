"""The Telegram frontend (python-telegram-bot): see `frontend.TelegramFrontend`."""

from bot.chat.telegram.frontend import TelegramFrontend

__all__ = ["TelegramFrontend"]
