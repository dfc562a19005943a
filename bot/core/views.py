"""Texts made of several messages and the records they describe: help, the model list.

Every frontend shows these the same way, in plain text; the words come from `bot.core.texts`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.photos import MAX_PHOTOS, MIN_PHOTOS, MIN_SIDE_PX
from bot.core.records import TuneRecord, TuneState
from bot.core.texts import text


def help_text(photo_hint: str) -> str:
    """What the bot does and how to use it; `photo_hint` says how photos are sent here."""
    steps = text(
        "help",
        min_photos=MIN_PHOTOS,
        max_photos=MAX_PHOTOS,
        min_side=MIN_SIDE_PX,
        photo_hint=photo_hint,
    )
    return f"{steps}\n{text('help.packs')}"


def started_text(key: str, tune: TuneRecord) -> str:
    """ "Training started" (`key`: where the news will come), then the set's weak points."""
    return "\n".join((text(key, model=tune.display_name), *tune.advice))


def models_text(tunes: Sequence[TuneRecord], active_id: int | None) -> str:
    if not tunes:
        return text("models.none")
    lines = [text("models.heading")]
    for tune in tunes:
        line = text("models.line", id=tune.id, model=tune.display_name, state=state_label(tune))
        if tune.state == TuneState.TRAINED:
            line += text("models.lora", backend_id=tune.backend_id)
        if tune.id == active_id:
            line += text("models.active")
        lines.append(line)
    return "\n".join(lines)


def state_label(tune: TuneRecord) -> str:
    """The state as a user reads it ("ready", not "trained")."""
    return text(f"tune_state.{tune.state}")
