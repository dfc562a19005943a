"""Model-free photo checks (backends/photo_quality.py) on real photographs and copies of them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from backends.findings import Finding
from backends.photo_quality import (
    PhotoError,
    PhotoHash,
    Region,
    _level_percentiles,
    assess,
    exposure,
    face_findings,
    find_near_duplicate,
    near_duplicate_groups,
    open_photo,
    perceptual_hash,
    sharpness,
)
from tests.imagegen import png_claiming_size
from tests.photos import astronaut, blurred, cameraman, cat, coffee, darkened, jpeg

ASTRONAUT_FACE = Region(357, 166, 171, 171)
"""Where dlib's detector puts her face at 1024 px (tests/test_face_detect.py checks it)."""


# -- sharpness ------------------------------------------------------------------------------


@pytest.mark.parametrize("photo", [astronaut, cameraman, cat, coffee])
def test_sharp_photographs_are_not_blurry_and_blurred_copies_are(photo) -> None:
    assert Finding.BLURRY not in assess(photo()).findings
    assert Finding.BLURRY in assess(blurred(photo())).findings


def test_sharpness_on_the_face_falls_with_blur() -> None:
    sharp = sharpness(astronaut(), ASTRONAUT_FACE)
    soft = sharpness(blurred(astronaut(), 1), ASTRONAUT_FACE)
    softer = sharpness(blurred(astronaut(), 3), ASTRONAUT_FACE)
    assert sharp > soft > softer
    assert not assess(astronaut(), ASTRONAUT_FACE).blurry
    assert assess(blurred(astronaut(), 3), ASTRONAUT_FACE).blurry


def test_a_sharp_subject_on_a_blurred_background_is_sharp() -> None:
    """Portrait mode: the background is soft, the head and shoulders are not."""
    image = blurred(astronaut(), 6)
    subject = (256, 64, 768, 576)
    image.paste(astronaut().crop(subject), subject[:2])
    assert not assess(image, ASTRONAUT_FACE).blurry
    assert not assess(image).blurry  # judged by its sharpest tiles
    assert assess(blurred(astronaut(), 6)).blurry


def test_sharpness_is_judged_at_training_scale() -> None:
    """A 4x larger copy of the same photo is not sharper, nor blurrier, by much."""
    big = astronaut().resize((4096, 4096), Image.LANCZOS)
    assert sharpness(big) == pytest.approx(sharpness(astronaut()), rel=0.25)


def test_darkness_alone_does_not_read_as_blur() -> None:
    assert not assess(darkened(astronaut())).blurry


# -- exposure -------------------------------------------------------------------------------


def test_exposure_of_good_photographs_is_fine() -> None:
    for photo in (astronaut, cameraman, cat, coffee):
        assert exposure(photo()).findings == frozenset(), photo.__name__


def test_darkened_and_brightened_copies() -> None:
    assert Finding.TOO_DARK in exposure(darkened(astronaut())).findings
    assert Finding.TOO_DARK in exposure(darkened(cat(), 0.3)).findings
    washed = ImageEnhance.Brightness(astronaut()).enhance(2.5)
    assert {Finding.TOO_BRIGHT, Finding.CLIPPED} <= exposure(washed, ASTRONAUT_FACE).findings
    assert Finding.CLIPPED in exposure(ImageEnhance.Brightness(astronaut()).enhance(1.8)).findings


def test_exposure_on_the_face_sees_a_backlit_face() -> None:
    """A face in shadow in an otherwise bright photo: dark on the face, fine overall."""
    image = astronaut().copy()
    box = (ASTRONAUT_FACE.x, ASTRONAUT_FACE.y, ASTRONAUT_FACE.x + 171, ASTRONAUT_FACE.y + 171)
    image.paste(darkened(image.crop(box), 0.15), box[:2])
    assert Finding.TOO_DARK in exposure(image, ASTRONAUT_FACE).findings
    assert Finding.TOO_DARK not in exposure(image).findings


# -- near-duplicates ------------------------------------------------------------------------


def test_copies_of_a_photo_are_near_duplicates_and_other_photos_are_not() -> None:
    original = perceptual_hash(astronaut())
    copies = {
        "re-encoded": open_photo(jpeg(astronaut(), 40)),
        "smaller": astronaut().resize((512, 512)),
        "cropped 5 %": astronaut().crop((25, 25, 999, 999)),
        "brighter": ImageEnhance.Brightness(astronaut()).enhance(1.3),
        "gray": astronaut().convert("L"),
    }
    for name, copy in copies.items():
        assert original.distance(perceptual_hash(copy)) <= 10, name
    others = [cameraman(), cat(), coffee(), ImageOps.mirror(astronaut())]
    for other in others:
        assert original.distance(perceptual_hash(other)) > 10


def test_near_duplicate_in_a_set_and_groups() -> None:
    hashes = [perceptual_hash(p) for p in (astronaut(), cat(), coffee())]
    again = perceptual_hash(open_photo(jpeg(astronaut(), 60)))
    assert find_near_duplicate(again, hashes) == 0
    assert find_near_duplicate(perceptual_hash(cameraman()), hashes) is None
    assert assess(astronaut(), others=hashes[1:]).near_duplicate_of is None
    assert Finding.NEAR_DUPLICATE in assess(astronaut(), others=[hashes[2], again]).findings
    assert near_duplicate_groups([*hashes, again]) == [[0, 3]]
    assert near_duplicate_groups(hashes) == []


def test_hash_text_round_trip_and_refusals() -> None:
    value = perceptual_hash(cat())
    assert PhotoHash.parse(str(value)) == value
    assert len(str(value)) == 16
    for bad in ("", "xyz", "0" * 15, "g" * 16, "0" * 17):
        with pytest.raises(ValueError, match="photo hash"):
            PhotoHash.parse(bad)


# -- faces (the worker's detector supplies the boxes) ------------------------------------


def test_face_findings_for_people_and_for_pets() -> None:
    size = (1024, 1024)
    face = Region(400, 200, 300, 300)
    assert face_findings([face], size, class_name="woman") == frozenset()
    assert face_findings([], size, class_name="Man") == {Finding.NO_FACE}
    assert face_findings([face, face], size, class_name="man") == {Finding.MULTIPLE_FACES}
    tiny = Region(500, 500, 60, 60)
    assert face_findings([tiny], size, class_name="girl") == {Finding.FACE_TOO_SMALL}
    assert face_findings([], size, class_name="cat") == frozenset()
    assert face_findings([face, face], size, class_name="dog") == frozenset()


# -- decoding -------------------------------------------------------------------------------


def test_open_photo_applies_the_exif_rotation() -> None:
    """Phones store portrait photos sideways with an EXIF orientation tag."""
    sideways = astronaut().resize((600, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", exif=exif.tobytes())
    upright = open_photo(buffer.getvalue())
    assert upright.size == (400, 600)
    assert upright.mode == "RGB"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an image"),
        (b"%PDF-1.4 not a photo", "not an image"),
        (jpeg(astronaut())[:3000], "damaged or cut short"),
        (png_claiming_size(20_000, 20_000), "megapixels"),
    ],
    ids=["empty", "pdf", "truncated", "pixel bomb"],
)
def test_open_photo_refuses_clearly(content: bytes, message: str) -> None:
    with pytest.raises(PhotoError, match=message):
        open_photo(content)


def test_level_percentiles_are_numpys_percentiles_exactly() -> None:
    """The histogram shortcut behind sharpness gives what `np.percentile` gives, bit for bit:
    the blur thresholds were set with the latter."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        height, width = rng.integers(1, 60, 2)
        levels = rng.integers(0, rng.integers(1, 257), size=(height, width)).astype(np.uint8)
        expected = np.percentile(levels.astype(np.float64), (1, 99))
        assert _level_percentiles(levels, (0.01, 0.99)) == [float(v) for v in expected]
