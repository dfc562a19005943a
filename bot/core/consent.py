"""Consent before a user's first training (issue 15): asked once, stored with its time.

Before the first /train a user confirms, with a button (the console: `/consent`), that the
photos show themselves or someone who agreed, and that the person is an adult. The time is
stored on the user (`users.consented_at`); without it `start_training` refuses with
`ConsentNeeded`, whose message is the question itself, so every path to a training (a command,
a class button, Discord's armed intake) asks rather than trains. /delete removes the user row,
and with it the consent: a returning user is asked again.

The wording is `consent.question` in the catalogs; an operator replaces it with their own
text (any language, sent as is) by pointing CONSENT_TEXT_FILE at a UTF-8 file.
"""

from __future__ import annotations

from pathlib import Path

from bot.core.errors import UserError
from bot.core.texts import text


class ConsentNeeded(UserError):
    """/train before the one-time confirmation; the message is the question to confirm."""


class ConsentTextError(ValueError):
    """CONSENT_TEXT_FILE cannot be read or is empty."""


def read_consent_text(path: Path | None) -> str | None:
    """The operator's wording from `path` (None: the catalogs' `consent.question`)."""
    if path is None:
        return None
    try:
        wording = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsentTextError(f"cannot read {path}: {exc}") from None
    if not wording:
        raise ConsentTextError(f"{path} is empty")
    return wording


def consent_question(operator_text: str | None) -> str:
    """What the user is asked to confirm, ending with how to confirm it."""
    return f"{operator_text or text('consent.question')}\n{text('consent.how')}"
