"""What can be wrong with a training photo: one vocabulary for both backends.

Our worker's `POST /images/inspect` reports these by name (`findings`); hosted Astria's
booleans map onto them (`backends.astria.parse_inspection`); the bot's own model-free checks
(`backends.photo_quality`) add theirs. Kept apart from photo_quality so that importing the
backend contract (`backends.base`) does not import numpy.
"""

from __future__ import annotations

from enum import StrEnum

PERSON_CLASSES = frozenset({"man", "woman", "boy", "girl", "baby", "person", "couple"})
"""Class names whose photos must show a human face (pets and styles need none)."""


class Finding(StrEnum):
    """Something wrong with a training photo. The bot words each one for the user."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    CLIPPED = "clipped"
    NEAR_DUPLICATE = "near_duplicate"
    SUNGLASSES = "sunglasses"
    """Only hosted Astria's inspect tells this (no packaged model here can)."""
    HAT = "hat"
    """Only hosted Astria's inspect tells this."""
    FUNNY_FACE = "funny_face"
    """Only hosted Astria's inspect tells this."""
    WRONG_CLASS = "wrong_class"
    """Hosted Astria saw another class (e.g. asked for `man`, saw `woman` or a dog)."""
