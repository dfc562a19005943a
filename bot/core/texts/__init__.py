"""Every sentence the bot says in a chat, behind one function: `text(key, **args)`, in the
reader's language.

Code never writes chat wording itself: it names a message by its key and passes the values to
fill in (`text("train.started_here", model="man #1")`). The English sentences live in one
catalog (`english.py`); every other language is a standard gettext catalog made from it with
Babel (`bot/locales/<code>/LC_MESSAGES/messages.po`; the commands are in the README). The key
is each entry's `msgctxt`, the English its `msgid`.

The language is the one of the moment (`languages.set_language`, set per chat update and per
job), so callers never pass it. Plural forms: a message that counts something is a `Plural`
and is looked up with `count` (`text("photos.summary", count=3, ...)`), which gettext's
`npgettext` turns into the right form for the language (Russian has three), and fills
`{count}`. Numbers and times are written the reader's way (see `formatting`).

What is not here: messages for the operator (configuration errors, `doctor`, log lines, CLI
help) stay in English beside their code; they are not chat wording.
"""

from __future__ import annotations

from bot.core.texts.catalog import Plural
from bot.core.texts.catalogs import translations
from bot.core.texts.english import MESSAGES
from bot.core.texts.formatting import fill
from bot.core.texts.languages import current_language

__all__ = ["Plural", "text"]


def text(key: str, /, count: int | None = None, **args: object) -> str:
    """The message `key` in the current language, with `args` (and `count`) filled in.

    An unknown key or a missing argument raises (KeyError): a typo must fail in the tests, not
    show a half-filled sentence to a user.
    """
    entry = MESSAGES[key]
    language = current_language()
    catalog = translations(language)
    if isinstance(entry, Plural):
        if count is None:
            raise TypeError(f"text({key!r}) counts something: pass count=")
        template = catalog.npgettext(key, entry.one, entry.other, count)
    else:
        template = catalog.pgettext(key, entry)
    return fill(template, language, {"count": count, **args})
