"""Face detection for photo inspection and best-of scoring, with weights that ship in a wheel.

Two detectors, picked by `FACE_DETECTOR` (`auto`, the default, takes the best one installed):

- `dlib`: dlib's HOG + linear SVM frontal detector. Its model is compiled into dlib itself
  (the `dlib-bin` wheel, in the worker extra): nothing to download. Run on the photo brought to
  `DLIB_SIDE` px on its short side with one pyramid up-sampling, so faces down to ~6 % of the
  frame are found in well under a second on one CPU core.
- `haar`: OpenCV's frontal-face Haar cascade (weights in the `opencv-python-headless` wheel),
  the floor, as used by the inpaint_faces stage (`faces.py`).

Measured on scikit-image's photographs brought to >= 1024 px (astronaut, camera, chelsea the
cat, coffee, rocket, motorcycle) and on copies (the astronaut and the cameraman side by side,
the astronaut blurred and darkened): dlib at 640 px found the right number of faces in 9 of
10, the Haar cascade in 6 of 10 (it misses the cameraman, so it finds one face of two side by
side, and calls the coffee cup a face). Details and the rejected candidates: README, "Photo
inspection".
"""

from __future__ import annotations

import importlib.util
import logging
from enum import StrEnum
from typing import Protocol

import numpy as np
from PIL import Image

from backends.local import faces
from backends.photo_quality import Region

log = logging.getLogger(__name__)

DLIB_SIDE = 640
"""Short side (px) dlib's detector sees; with one up-sampling it finds faces of ~40 px there
(6 % of the frame)."""


class DetectorName(StrEnum):
    AUTO = "auto"
    DLIB = "dlib"
    HAAR = "haar"


class FaceDetector(Protocol):
    """Finds frontal human faces; returns boxes in the image's own pixels, largest first."""

    name: DetectorName

    def detect(self, image: Image.Image) -> list[Region]: ...


class HaarDetector:
    """OpenCV's `haarcascade_frontalface_default.xml`, as the inpaint_faces stage uses it."""

    name = DetectorName.HAAR

    def detect(self, image: Image.Image) -> list[Region]:
        return [Region(b.x, b.y, b.w, b.h) for b in faces.detect_faces(image)]


class DlibDetector:
    """dlib's `get_frontal_face_detector()` (HOG), run at DLIB_SIDE px."""

    name = DetectorName.DLIB

    def __init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: Image.Image) -> list[Region]:
        factor = min(1.0, DLIB_SIDE / min(image.size))
        small = image.convert("RGB")
        if factor < 1.0:
            size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
            small = small.resize(size, Image.BILINEAR, reducing_gap=2.0)
        boxes = []
        for rect in self._detector(np.asarray(small), 1):
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(small.width, rect.right()), min(small.height, rect.bottom())
            if right > left and bottom > top:
                boxes.append(
                    faces.Box(
                        round(left / factor),
                        round(top / factor),
                        round((right - left) / factor),
                        round((bottom - top) / factor),
                    )
                )
        return [Region(b.x, b.y, b.w, b.h) for b in faces.merge_overlaps(boxes)]


def dlib_installed() -> bool:
    return importlib.util.find_spec("dlib") is not None


def make_detector(choice: DetectorName | str = DetectorName.AUTO) -> FaceDetector:
    """The detector asked for; `auto` is dlib when installed, else the Haar cascade.
    Raises ValueError for an unknown name or for `dlib` when dlib is not installed."""
    name = DetectorName(choice)
    if name is DetectorName.DLIB and not dlib_installed():
        raise ValueError("FACE_DETECTOR=dlib needs dlib: pip install dlib-bin")
    if name is DetectorName.HAAR or not dlib_installed():
        return HaarDetector()
    return DlibDetector()
