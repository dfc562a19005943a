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
so then the bot uses the model-free checks it made itself (`backends.photo_quality`:
sharpness, exposure, the perceptual hash; made with the photo's preparation, in the photo
process), and looks for near-duplicates among the set's stored hashes, as it does when the
inspection failed. Our worker runs the same checks, so its answer is taken as it is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from backends.base import Backend, BackendError, TrainingImage
from backends.findings import PERSON_CLASSES, Finding
from backends.photo_quality import PhotoHash, PhotoQuality, find_near_duplicate
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
    measured: PhotoQuality | None = None,
) -> Verdict:
    """Inspect one photo; `subject` names it in the sentences ("photo IMG_1.jpg"). `measured`:
    the model-free checks the photo process made of it (photos.prepare_and_measure), used when
    the backend measured nothing; they are held here against the set's `hashes`."""
    class_name = intake.name
    findings: set[Finding] = set()
    attributes: dict[str, str] = {}
    phash: str | None = None
    try:
        found = await backend.inspect_image(class_name, image, hashes=hashes)
        findings, attributes, phash = set(found.findings), found.attributes, found.phash
    except BackendError as exc:
        log.warning("photo inspection unavailable, only the local checks run: %s", exc)
    if phash is None and (local := against_set(measured, hashes)):
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


def against_set(measured: PhotoQuality | None, hashes: Sequence[str]) -> PhotoQuality | None:
    """`measured` with its near-duplicate among the set's `hashes` (None: none or unreadable)."""
    if measured is None:
        return None
    try:
        others = [PhotoHash.parse(h) for h in hashes]
    except ValueError:
        return None
    return dataclasses.replace(
        measured, near_duplicate_of=find_near_duplicate(measured.phash, others)
    )
