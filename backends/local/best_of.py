"""Best-of selection (`OVERGENERATE`): make more images than asked, deliver the best ones.

A prompt for `num_images` makes `ceil(num_images * OVERGENERATE)` images, in rounds of at most
`num_images` (the batch, and so the GPU memory, stays what the user asked for; image j of the
whole run uses seed `seed + j`, so a re-run gives the same images and the same choice), scores
each and keeps the best `num_images`, best first.

The score (0..1) of an image, for a tune of a person:
- with the `likeness` extra: 0.6 x likeness + 0.25 x face presence + 0.15 x sharpness, where
  likeness = 1 - d / (2 x 0.6) clipped to 0..1, d the embedding distance from the closest face
  in the image to the tune's training faces (median over them; 0.6 is dlib's same-person
  threshold, so a borderline face scores 0.5);
- without it (or with no usable training face): 0.7 x face presence + 0.3 x sharpness.
Face presence is 1 for exactly one face, 0.5 for several (someone else crept in), 0 for none;
sharpness is the face's Laplacian variance at training scale over `SHARP_ENOUGH`, capped at 1.
For pets and styles (no human face expected) the score is the whole image's sharpness.

The training faces' embeddings are computed once per tune, from the photos its row names
(`PromptJob.training_photos`), and kept in the tune's folder (`likeness.npy`), so they outlive
the training photos and go when the tune is deleted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from backends.findings import PERSON_CLASSES
from backends.local.artefacts import MANIFEST_FILE, ArtefactError, Manifest
from backends.local.face_detect import DetectorName, FaceDetector, make_detector
from backends.local.generate import Engine, Progress, PromptJob
from backends.local.likeness import (
    SAME_PERSON_DISTANCE,
    FaceEmbedder,
    distance_to,
    load_embedder,
    reference_embeddings,
)
from backends.photo_quality import BLURRY_BELOW_FACE, sharpness

if TYPE_CHECKING:
    from backends.local.config import WorkerConfig

log = logging.getLogger(__name__)

SHARP_ENOUGH = 4 * BLURRY_BELOW_FACE
"""Face sharpness (Laplacian variance) that earns the full sharpness share of the score."""
LIKENESS_WEIGHT, PRESENCE_WEIGHT, SHARPNESS_WEIGHT = 0.6, 0.25, 0.15
FALLBACK_PRESENCE_WEIGHT, FALLBACK_SHARPNESS_WEIGHT = 0.7, 0.3
REFERENCES_FILE = "likeness.npy"
MAX_FACTOR = 4.0
"""OVERGENERATE above this is clipped: past 4x the GPU time buys little."""


@dataclass(frozen=True)
class ImageScore:
    """Why an image was kept or dropped; shown per image in the worker's prompt object."""

    score: float
    seed: int
    faces: int
    sharpness: float
    likeness: float | None
    """0..1 (None: not scored by likeness)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "seed": self.seed,
            "faces": self.faces,
            "sharpness": round(self.sharpness, 1),
            "likeness": None if self.likeness is None else round(self.likeness, 4),
        }


@dataclass(frozen=True)
class BestOf:
    """The kept images, best first, with their scores; `generated` counts all made."""

    images: list[Image.Image]
    scores: list[ImageScore]
    generated: int

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated, "scores": [s.to_json() for s in self.scores]}


class Scorer:
    """Scores images of one tune: its class and (optionally) its training faces."""

    def __init__(
        self,
        detector: FaceDetector,
        *,
        person: bool = True,
        embedder: FaceEmbedder | None = None,
        references: list[np.ndarray] | None = None,
    ) -> None:
        self.detector = detector
        self.person = person
        self.embedder = embedder if references else None
        self.references = references or []

    def score(self, image: Image.Image, seed: int = 0) -> ImageScore:
        if not self.person:
            sharp = sharpness(image)
            return ImageScore(min(1.0, sharp / SHARP_ENOUGH), seed, 0, sharp, None)
        boxes = self.detector.detect(image)
        sharp = sharpness(image, boxes[0]) if boxes else 0.0
        presence = 0.0 if not boxes else 1.0 if len(boxes) == 1 else 0.5
        sharp_part = min(1.0, sharp / SHARP_ENOUGH)
        if self.embedder is None:
            total = FALLBACK_PRESENCE_WEIGHT * presence + FALLBACK_SHARPNESS_WEIGHT * sharp_part
            return ImageScore(total, seed, len(boxes), sharp, None)
        likeness = 0.0
        if boxes:
            distance = min(
                distance_to(self.references, self.embedder.embed(image, box)) for box in boxes
            )
            likeness = min(1.0, max(0.0, 1.0 - distance / (2 * SAME_PERSON_DISTANCE)))
        total = (
            LIKENESS_WEIGHT * likeness + PRESENCE_WEIGHT * presence + SHARPNESS_WEIGHT * sharp_part
        )
        return ImageScore(total, seed, len(boxes), sharp, likeness)


def rank(scores: list[ImageScore]) -> list[int]:
    """Indices, best first; ties keep generation order (a lower seed first)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i].score, i))


class BestOfSelector:
    """Holds the detector and embedder (loaded on first use) and the references per tune."""

    def __init__(self, factor: float, detector: DetectorName | str) -> None:
        self.factor = min(MAX_FACTOR, factor)
        self._detector_choice = detector
        self._detector: FaceDetector | None = None
        self._embedder: FaceEmbedder | None = None
        self._embedder_loaded = False

    @classmethod
    def for_worker(cls, config: WorkerConfig) -> BestOfSelector:
        """The selector a worker's OVERGENERATE and FACE_DETECTOR ask for (one machine's
        runner and the fleet's GPU worker alike)."""
        return cls(config.overgenerate, config.face_detector)

    def run(self, engine: Engine, job: PromptJob, progress: Progress) -> BestOf:
        """Generate `num_images x factor` images in rounds, score them, keep the best."""
        params = job.params
        wanted = params.num_images
        total = math.ceil(wanted * self.factor)
        rounds = math.ceil(total / wanted)
        images: list[Image.Image] = []
        for index in range(rounds):
            count = min(wanted, total - len(images))
            round_job = replace(
                job, params=replace(params, num_images=count, seed=params.seed + len(images))
            )
            done = index
            images += engine.run_prompt(
                round_job, lambda f, done=done: progress(min(0.99, (done + f) / rounds))
            )
        scorer = self.scorer(job)
        scores = [scorer.score(image, params.seed + i) for i, image in enumerate(images)]
        best = rank(scores)[:wanted]
        log.info(
            "prompt %s: kept %d of %d images (scores %s)",
            job.prompt_id,
            wanted,
            total,
            ", ".join(f"{scores[i].score:.2f}" for i in best),
        )
        progress(1.0)
        return BestOf([images[i] for i in best], [scores[i] for i in best], total)

    def scorer(self, job: PromptJob) -> Scorer:
        """The scorer for the job's tune (none: a person, scored without likeness)."""
        detector = self.detector()
        if job.tune_dir is None:
            return Scorer(detector)
        person = _class_word(job.tune_dir) in PERSON_CLASSES
        embedder = self.embedder() if person else None
        if embedder is None:
            return Scorer(detector, person=person)
        references = self._references(job.tune_dir, job.training_photos, embedder)
        return Scorer(detector, person=person, embedder=embedder, references=references)

    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(self._detector_choice)
        return self._detector

    def embedder(self) -> FaceEmbedder | None:
        if not self._embedder_loaded:
            self._embedder = load_embedder()
            self._embedder_loaded = True
        return self._embedder

    def _references(
        self, tune_dir: Path, photos: tuple[Path, ...], embedder: FaceEmbedder
    ) -> list[np.ndarray]:
        """The training faces' embeddings, from the tune's folder or computed from `photos`
        and saved there (none: the photos are not on this machine, or show no single face)."""
        saved = tune_dir / REFERENCES_FILE
        if saved.is_file():
            return list(np.load(saved))
        if not photos:
            log.info("tune %s: no training photos here; no likeness", tune_dir.name)
            return []
        found = reference_embeddings(list(photos), self.detector(), embedder)
        if found:
            np.save(saved, np.stack(found))
        else:
            log.warning("tune %s: no single-face training photo; no likeness", tune_dir.name)
        return found


def _class_word(tune_dir: Path) -> str:
    """The tune's class (`man`, `cat`, ...) from its manifest; `person` if unreadable."""
    try:
        manifest = Manifest.from_json(json.loads((tune_dir / MANIFEST_FILE).read_text()))
    except (OSError, ValueError, ArtefactError):
        return "person"
    return manifest.class_word.lower()
