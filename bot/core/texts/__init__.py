"""Every sentence the bot says in a chat, behind one function: `text(key, **args)`.

Code never writes chat wording itself: it names a message by its key and passes the values to
fill in (`text("train.started_here", model="man #1")`). The sentences live in one catalog
(`english.py`), so they can be read, reworded and translated in one place.

Plural forms: a message that counts something is looked up with `count` (`text("photos.summary",
count=3, ...)`), which picks its form and fills `{count}`. English has two forms (`Plural.one`
and `Plural.other`); a translation brings its own rule. This is the seam the languages work
plugs into: a gettext catalog per language behind `text`, chosen per user, with `key` as the
message id and `count` handed to `ngettext`; callers stay as they are.

What is not here: messages for the operator (configuration errors, `doctor`, log lines, CLI
help) stay in English beside their code; they are not chat wording.
"""

from __future__ import annotations

from bot.core.texts.catalog import Plural
from bot.core.texts.english import MESSAGES

__all__ = ["Plural", "text"]


def text(key: str, /, count: int | None = None, **args: object) -> str:
    """The message `key` with `args` (and `count`, when given) filled in.

    An unknown key or a missing argument raises (KeyError): a typo must fail in the tests, not
    show a half-filled sentence to a user.
    """
    entry = MESSAGES[key]
    if isinstance(entry, Plural):
        if count is None:
            raise TypeError(f"text({key!r}) counts something: pass count=")
        entry = entry.one if count == 1 else entry.other
    return entry.format(count=count, **args)
