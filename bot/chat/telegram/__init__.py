"""The Telegram frontend (python-telegram-bot): see `frontend.TelegramFrontend`."""

from bot.chat.telegram.frontend import TelegramFrontend, run_telegram

__all__ = ["TelegramFrontend", "run_telegram"]
