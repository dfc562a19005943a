"""Texts every frontend shows the same way (help, model lists), in plain text."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.photos import MAX_PHOTOS, MIN_PHOTOS, MIN_SIDE_PX
from bot.core.store import TuneRecord

STATE_LABELS = {
    "creating": "uploading",
    "training": "training",
    "trained": "ready",
    "failed": "failed",
    "cancelled": "cancelled",
}


def help_text(photo_hint: str) -> str:
    """What the bot does and how to use it; `photo_hint` says how photos are sent here."""
    return (
        "I make photoshoots of you. Three steps:\n"
        f"1. Send me {MIN_PHOTOS}-{MAX_PHOTOS} photos of yourself (face clearly visible, varied "
        f"backgrounds, at least {MIN_SIDE_PX} px on the short side). {photo_hint}\n"
        "2. /train man (or woman, person, boy, girl, dog, cat …) trains your personal model.\n"
        "3. /imagine astronaut on the moon makes pictures of you.\n\n"
        "More: /models lists your models (and picks the active one), /status shows what is "
        "running, /cancel stops running jobs or drops photos not yet trained, /delete removes "
        "everything of yours, here and on the image service.\n"
        "Tip: short prompts work best. Add --no <things> to keep things out of the picture."
    )


def models_text(tunes: Sequence[TuneRecord], active_id: int | None) -> str:
    if not tunes:
        return "You have no models yet. Send photos, then /train man (or woman, person …)."
    lines = ["Your models:"]
    for tune in tunes:
        marker = " (active)" if tune.id == active_id else ""
        lora = f", <lora:{tune.backend_id}:0.8>" if tune.state == "trained" else ""
        state = STATE_LABELS.get(tune.state, tune.state)
        lines.append(f"#{tune.id} {tune.display_name}: {state}{lora}{marker}")
    return "\n".join(lines)
