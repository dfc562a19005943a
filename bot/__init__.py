"""photoshoot-bot: the chat side (Telegram, Discord, console) of the photoshoot service."""
