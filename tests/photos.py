"""Real photographs that ship in a package (scikit-image), brought to training size, and the
copies the inspection tests need: two people side by side, blurred, darkened, re-encoded.

astronaut: Eileen Collins (one face); camera: the cameraman (one face, another person);
chelsea: a cat (no human face); coffee: a cup (no face).
"""

from __future__ import annotations

import io
from functools import cache

from PIL import Image, ImageEnhance, ImageFilter

TRAINING_SIDE = 1024


def packaged(name: str) -> Image.Image:
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    factor = TRAINING_SIDE / min(image.size)
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.LANCZOS) if factor > 1 else image


@cache
def astronaut() -> Image.Image:
    return packaged("astronaut")


@cache
def cameraman() -> Image.Image:
    return packaged("camera")


@cache
def cat() -> Image.Image:
    return packaged("chelsea")


@cache
def coffee() -> Image.Image:
    return packaged("coffee")


@cache
def two_people() -> Image.Image:
    """The astronaut and the cameraman side by side (2048 x 1024)."""
    image = Image.new("RGB", (2 * TRAINING_SIDE, TRAINING_SIDE))
    image.paste(astronaut(), (0, 0))
    image.paste(cameraman(), (TRAINING_SIDE, 0))
    return image


def blurred(image: Image.Image, radius: float = 4) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def darkened(image: Image.Image, factor: float = 0.2) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
