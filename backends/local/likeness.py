"""How much a face looks like the person of a tune: dlib's face-recognition ResNet (optional).

The weights ship in the `face_recognition_models` package (the `likeness` extra, with dlib):
a 5-point landmark model to align the face (CC0) and the 128-d ResNet embedding (LFW accuracy
99.38 %). Two faces of the same person are usually under `SAME_PERSON_DISTANCE` apart (dlib's
own threshold). Without the extra, `load_embedder()` is None and best-of selection scores by
face presence and sharpness alone (see best_of.py).

The package's own `__init__` imports `pkg_resources`, which recent setuptools no longer has
(the import fails); only its data files are used here, found without importing it.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from backends.local.face_detect import FaceDetector
from backends.photo_quality import Region

log = logging.getLogger(__name__)

SAME_PERSON_DISTANCE = 0.6
"""dlib's threshold: embeddings closer than this are the same person (LFW-calibrated)."""
EMBED_SIDE = 1024
"""Long side the photo is brought to before landmarks and embedding (training scale)."""


def models_dir() -> Path | None:
    """The folder of face_recognition_models' weights, or None if it is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations or not _has_dlib():
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


class FaceEmbedder:
    """dlib's aligned 128-d face descriptor."""

    def __init__(self, folder: Path) -> None:
        import dlib

        self._landmarks = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._resnet = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def embed(self, image: Image.Image, face: Region) -> np.ndarray:
        """The descriptor of the face in box `face` (pixels of `image`)."""
        import dlib

        factor = min(1.0, EMBED_SIDE / max(image.size))
        rgb = image.convert("RGB")
        if factor < 1.0:
            rgb = rgb.resize((round(image.width * factor), round(image.height * factor)))
        pixels = np.asarray(rgb)
        rect = dlib.rectangle(
            round(face.x * factor),
            round(face.y * factor),
            round((face.x + face.w) * factor),
            round((face.y + face.h) * factor),
        )
        shape = self._landmarks(pixels, rect)
        return np.asarray(self._resnet.compute_face_descriptor(pixels, shape), dtype=np.float64)


def load_embedder() -> FaceEmbedder | None:
    """The embedder when the `likeness` extra is installed, else None (logged once)."""
    folder = models_dir()
    if folder is None:
        log.info("likeness scoring off: install the `likeness` extra to score by likeness")
        return None
    return FaceEmbedder(folder)


def reference_embeddings(
    photos: Iterable[Path], detector: FaceDetector, embedder: FaceEmbedder
) -> list[np.ndarray]:
    """One descriptor per training photo that shows exactly one face (group photos and
    unreadable files are skipped: they would blur who "the person" is)."""
    from backends.photo_quality import PhotoError, open_photo

    found = []
    for path in photos:
        try:
            image = open_photo(path.read_bytes())
        except (OSError, PhotoError):
            continue
        boxes = detector.detect(image)
        if len(boxes) == 1:
            found.append(embedder.embed(image, boxes[0]))
    return found


def distance_to(references: list[np.ndarray], embedding: np.ndarray) -> float:
    """Distance from `embedding` to the person: the median over the reference faces (one odd
    training photo does not decide)."""
    return float(np.median([np.linalg.norm(embedding - r) for r in references]))


def _has_dlib() -> bool:
    return importlib.util.find_spec("dlib") is not None
