"""Slash commands in every language the bot speaks, through discord.py's translator.

Every name, description and choice of a command is a `locale_str` carrying its text key;
at sync, discord.py asks `CatalogTranslator` for each Discord locale, and the answer comes
from the same gettext catalogs as every chat message (`bot.core.texts`). Discord then shows a
German client `/hilfe`-style names and German descriptions, and sends us the base names, so
the handlers never see a translation.

The base (what other locales see) is English for names, which are the commands' identity in
the docs and the tests, and DEFAULT_LANGUAGE for descriptions (`SlashCommands.register` runs
in that language).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import TranslationContextTypes, locale_str

from bot.core.texts import languages, text


def command_name(key: str) -> locale_str:
    """A name Discord localises; its base is the English (names identify the command)."""
    with languages.use_language(languages.SOURCE_LANGUAGE):
        return locale_str(text(key), key=key)


def command_text(key: str) -> locale_str:
    """A description or choice Discord localises; its base in the current language."""
    return locale_str(text(key), key=key)


class CatalogTranslator(app_commands.Translator):
    """Answers discord.py's questions at sync from our catalogs (None: leave Discord's base)."""

    async def translate(
        self, string: locale_str, locale: discord.Locale, context: TranslationContextTypes
    ) -> str | None:
        key = string.extras.get("key")
        language = languages.match(locale.value)
        if key is None or language is None:
            return None
        with languages.use_language(language):
            return text(key)
