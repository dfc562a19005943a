"""Face detail pass (`inpaint_faces`): find faces, re-draw each at high resolution, blend back.

Detection uses OpenCV's Haar cascade, whose weights ship inside the `opencv-python-headless`
wheel (`cv2.data`): nothing is downloaded at run time, it runs on any CPU in milliseconds, and it
finds frontal faces, which is what portrait photoshoots mostly are. Profiles it misses are left
as generated (a miss costs detail, never breaks an image).

The blend mask is feathered *inwards*: it is 0 outside the detected box, so pixels outside a face
box are never touched, and ramps up inside it so the seam does not show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MIN_FACE_FRACTION = 0.06
"""Faces smaller than this share of the short side are skipped: too small to gain detail."""
CONTEXT = 1.6
"""The crop re-drawn around a face is this many times the face box (hair, jaw, some context)."""


@dataclass(frozen=True)
class Box:
    """A face box in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def detect_faces(image: Image.Image) -> list[Box]:
    """Frontal faces in `image`, largest first, with overlapping detections merged away."""
    import cv2

    gray = np.asarray(image.convert("L"))
    min_side = max(24, int(min(image.size) * MIN_FACE_FRACTION))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = cascade.detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    return merge_overlaps([Box(*map(int, f)) for f in found])


def merge_overlaps(boxes: list[Box]) -> list[Box]:
    """Largest first; a box overlapping a kept one by more than 30 % is the same face."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.area):
        if not any(_overlap(box, k) > 0.3 for k in kept):
            kept.append(box)
    return kept


def crop_region(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square around `box`, CONTEXT times larger, shifted/clipped to stay inside the image."""
    width, height = size
    side = min(int(max(box.w, box.h) * CONTEXT), width, height)
    cx, cy = box.x + box.w // 2, box.y + box.h // 2
    left = min(max(0, cx - side // 2), width - side)
    top = min(max(0, cy - side // 2), height - side)
    return left, top, left + side, top + side


def feather_mask(size: tuple[int, int], box: Box) -> Image.Image:
    """An L-mode mask: 255 in the middle of `box`, fading to exactly 0 at its edges and beyond."""
    feather = max(1, min(box.w, box.h) // 8)
    mask = Image.new("L", size, 0)
    inner = (
        box.x + 2 * feather,
        box.y + 2 * feather,
        box.x + box.w - 1 - 2 * feather,
        box.y + box.h - 1 - 2 * feather,
    )
    if inner[2] > inner[0] and inner[3] > inner[1]:
        ImageDraw.Draw(mask).ellipse(inner, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    # Gaussian tails reach past 2 sigma only below 1/255; clip hard to the box to be exact.
    clip = Image.new("L", size, 0)
    ImageDraw.Draw(clip).rectangle((box.x, box.y, box.x + box.w - 1, box.y + box.h - 1), fill=255)
    return Image.fromarray(np.minimum(np.asarray(mask), np.asarray(clip)))


Redraw = Callable[[Image.Image, int], Image.Image]
"""(square crop resized to the model's native size, face index) -> re-drawn crop, same size."""


def inpaint_faces(
    image: Image.Image, redraw: Redraw, *, native_size: int, boxes: list[Box] | None = None
) -> tuple[Image.Image, list[Box]]:
    """Re-draw every detected face of `image` via `redraw`; returns the result and the boxes."""
    boxes = detect_faces(image) if boxes is None else boxes
    result = image.convert("RGB")
    for index, box in enumerate(boxes):
        region = crop_region(box, result.size)
        crop = result.crop(region)
        side = region[2] - region[0]
        redrawn = redraw(crop.resize((native_size, native_size), Image.LANCZOS), index)
        redrawn = redrawn.convert("RGB").resize((side, side), Image.LANCZOS)
        local = Box(box.x - region[0], box.y - region[1], box.w, box.h)
        pasted = Image.composite(redrawn, crop, feather_mask((side, side), local))
        result.paste(pasted, region[:2])
    return result, boxes


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return ix * iy / max(1, min(a.area, b.area))
