"""The photo set as a whole (issue 15): what `/train` warns about, and what goes into the tune.

Intake stores, per photo, what its inspection found: the perceptual hash and the attributes
seen. From those, with no new inspection:

- `set_advice`: a set whose photos are near-duplicates of each other (a burst of one pose, the
  same selfie re-sent) teaches one pose and one light, and the model then repeats them. Photos
  are grouped by near-duplicate links (`backends.photo_quality.near_duplicate_groups`); fewer
  than MIN_DISTINCT_POSES groups gets a warning, one group a stronger one. Training still
  starts: it is the user's set, and four good poses are better advice than a refusal.
- `characteristics`: an attribute seen in more than half of the photos (Astria's `glasses`,
  `eye_color` ...) goes into the tune request, for pack prompts' `{{glasses}}` placeholders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from backends.photo_quality import PhotoHash, near_duplicate_groups
from bot.core.photos import MIN_PHOTOS
from bot.core.records import Photo
from bot.core.texts import text

MIN_DISTINCT_POSES = MIN_PHOTOS
"""Distinct photos (after folding near-duplicates) a set should hold: the minimum set size."""


def distinct_photos(photos: Sequence[Photo]) -> tuple[int, int]:
    """(distinct photos, photos with a hash): near-duplicates count once."""
    hashes = []
    for photo in photos:
        try:
            hashes.append(PhotoHash.parse(photo.phash or ""))
        except ValueError:  # not inspected (stored before issue 15): not counted
            continue
    groups = near_duplicate_groups(hashes)
    return len(hashes) - sum(len(group) - 1 for group in groups), len(hashes)


def set_advice(photos: Sequence[Photo]) -> tuple[str, ...]:
    """What to tell the user about the set at `/train`; empty when it looks varied enough."""
    distinct, hashed = distinct_photos(photos)
    if hashed < 2:
        return ()
    if distinct == 1:
        return (text("train.weak_all_similar", count=hashed),)
    if distinct < MIN_DISTINCT_POSES:
        return (
            text(
                "train.weak_few_poses", distinct=distinct, count=hashed, wanted=MIN_DISTINCT_POSES
            ),
        )
    return ()


def characteristics(photos: Sequence[Photo]) -> dict[str, str]:
    """Attributes seen with the same value in more than half of the photos."""
    seen = Counter((key, value) for photo in photos for key, value in photo.attributes.items())
    return {key: value for (key, value), n in sorted(seen.items()) if n * 2 > len(photos)}
