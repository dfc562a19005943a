"""Which languages the bot speaks, which one a user gets, and the language of the moment.

A language is a gettext catalog under `bot/locales/<code>/LC_MESSAGES/messages.po` (codes as
gettext spells them: `ru`, `pt_BR`); English is the source and needs none. Adding a language
is `pybabel init` (README) and translating: nothing here lists them.

A user's language is their own choice (`/language`), else what their platform says (Telegram's
`language_code`, Discord's `locale`, the console's `LANG`), else the operator's
DEFAULT_LANGUAGE. Platforms send tags such as `pt-br`, `es-419` or `ru_RU.UTF-8`; `match` maps
them to a catalog (same language and region, else the same language), or to nothing.

The language of the moment lives in a context variable: the chat adapter sets it when an update
arrives, the job tracker when a job's task starts, and `text()` reads it. asyncio gives every
task its own copy, so concurrent chats never see each other's language and callers of `text()`
need not pass one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel import Locale

SOURCE_LANGUAGE = "en"
LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
DOMAIN = "messages"

_current: ContextVar[str] = ContextVar("language", default=SOURCE_LANGUAGE)


@cache
def languages() -> tuple[str, ...]:
    """Every language the bot speaks: English first, then each catalog, by code."""
    found = sorted(path.parents[1].name for path in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (SOURCE_LANGUAGE, *(code for code in found if code != SOURCE_LANGUAGE))


def match(tag: str | None) -> str | None:
    """The language the bot speaks for a platform's tag (`pt-BR`, `es-419`, `ru_RU.UTF-8`), or
    None when it speaks no form of that language."""
    parts = [part for part in re.split(r"[-_]", (tag or "").split(".")[0].strip()) if part]
    if not parts or not parts[0].isalpha():
        return None
    language = parts[0].lower()
    region = parts[1].upper() if len(parts) > 1 else ""
    spoken = languages()
    if f"{language}_{region}" in spoken:
        return f"{language}_{region}"
    if language in spoken:
        return language
    return next((code for code in spoken if code.startswith(f"{language}_")), None)


def pick(chosen: str | None, platform: str | None, default: str) -> str:
    """The user's language: their `/language` choice, else their platform's, else `default`
    (which the configuration checked: see `require`)."""
    return match(chosen) or match(platform) or default


def require(tag: str) -> str:
    """The language for an operator's setting (DEFAULT_LANGUAGE); ValueError if not spoken."""
    code = match(tag)
    if code is None:
        raise ValueError(f"'{tag}' is not a language the bot speaks ({', '.join(languages())})")
    return code


def name(code: str) -> str:
    """The language's name in itself ("Deutsch", "Português (Brasil)"), from Babel's data."""
    display = Locale.parse(code).get_display_name(code) or code
    return display[:1].upper() + display[1:]


@cache
def babel_locale(code: str) -> Locale:
    """Babel's locale for a language: dates and numbers are written its way."""
    return Locale.parse(code)


def current_language() -> str:
    """The language `text()` speaks now (see the module docstring)."""
    return _current.get()


def set_language(code: str) -> None:
    """Speak `code` from now on, in this task (a chat update's, or a job's)."""
    _current.set(code)


@contextlib.contextmanager
def use_language(code: str) -> Iterator[None]:
    """Speak `code` inside the block only (command menus made for every language in turn)."""
    token = _current.set(code)
    try:
        yield
    finally:
        _current.reset(token)
