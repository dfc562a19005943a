"""Photo inspection at intake (issue 15): what the backend's `POST /images/inspect` says about
each new photo, in words the user can act on.

Every photo the intake accepts is inspected through the backend (hosted Astria or our worker,
the same client call), with the hashes of the photos before it in the batch so the worker can
name near-duplicates. What comes back decides:

- refused, for person classes: no face (`no_face`) or several people (`multiple_faces`); the
  photo is not stored and the counter message says why and what to do;
- warned, kept: everything else found (blurry, too dark, face too small ...), one line each.

The class is not known until /train, so intake inspects with the class of the user's latest
model, and refuses only then. With no model yet it inspects as `person` and only warns: a
first set of pet photos must not be refused for lacking a human face. An inspection that
fails (backend down, no inspect endpoint) keeps the photo.

Hosted Astria's inspect measures nothing (no `phash`) and knows nothing of the rest of the set,
so then the bot runs the model-free checks itself (`backends.photo_quality`: sharpness,
exposure, near-duplicates against the set's stored hashes), as it does when the inspection
failed. Our worker runs the same checks, so its answer is taken as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from backends.base import Backend, BackendError, TrainingImage
from backends.findings import PERSON_CLASSES, Finding
from backends.photo_quality import PhotoError, PhotoHash, PhotoQuality, assess, open_photo
from bot.core import photo_process
from bot.core.records import TuneRecord
from bot.core.texts import text

log = logging.getLogger(__name__)

DEFAULT_CLASS = "person"
REFUSING = (Finding.NO_FACE, Finding.MULTIPLE_FACES)
"""Findings that refuse a photo of a person class: training on them teaches the wrong face."""


@dataclass(frozen=True)
class Verdict:
    """What intake does with one photo: `refusal` (None: keep it) and `warnings` to show."""

    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)
    phash: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    """What the inspection saw (`glasses` ...), stored for the tune's characteristics."""


@dataclass(frozen=True)
class IntakeClass:
    """The class photos are inspected as; `known`: from a model, so refusals apply."""

    name: str
    known: bool


def intake_class(tunes: Sequence[TuneRecord]) -> IntakeClass:
    """The latest model's class, else `person` (a guess: warnings only)."""
    latest = max(tunes, key=lambda tune: tune.id, default=None)
    if latest is None:
        return IntakeClass(DEFAULT_CLASS, known=False)
    return IntakeClass(latest.class_name, known=True)


def finding_text(finding: Finding) -> str:
    """The short problem-and-remedy words for one finding ("2 people: crop to just you")."""
    return text(f"inspect.{finding}")


async def inspect_for_intake(
    backend: Backend,
    intake: IntakeClass,
    image: TrainingImage,
    subject: str,
    hashes: Sequence[str] = (),
) -> Verdict:
    """Inspect one photo; `subject` names it in the sentences ("photo IMG_1.jpg"). The local
    checks run in the photo process (photo_process.py), on the photo's bytes: they are
    decoded there, since sending its decoded pixels would cost the bot more than decoding."""
    class_name = intake.name
    findings: set[Finding] = set()
    attributes: dict[str, str] = {}
    phash: str | None = None
    try:
        found = await backend.inspect_image(class_name, image, hashes=hashes)
        findings, attributes, phash = set(found.findings), found.attributes, found.phash
    except BackendError as exc:
        log.warning("photo inspection unavailable, only the local checks run: %s", exc)
    if phash is None and (
        local := await photo_process.run(local_checks, image.content, list(hashes))
    ):
        findings |= local.findings
        phash = str(local.phash)
    person = intake.known and class_name.lower() in PERSON_CLASSES
    refusing = [f for f in REFUSING if f in findings] if person else []
    others = sorted(f for f in findings if f not in refusing)
    lines = [text("inspect.line", subject=subject, problem=finding_text(f)) for f in others]
    refusal = (
        text("inspect.line", subject=subject, problem=finding_text(refusing[0]))
        if refusing
        else None
    )
    return Verdict(refusal, lines, phash, attributes)


def local_checks(content: bytes, hashes: Sequence[str]) -> PhotoQuality | None:
    """Sharpness, exposure and near-duplicates of one photo against the set's `hashes`, without
    a model; None for bytes it cannot read (intake has checked them already)."""
    try:
        others = [PhotoHash.parse(h) for h in hashes]
        return assess(open_photo(content), None, others)
    except (PhotoError, ValueError):
        return None
