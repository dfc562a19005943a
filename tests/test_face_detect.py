"""Face detectors (backends/local/face_detect.py) on real photographs and copies of them."""

from __future__ import annotations

import pytest

from backends.local.face_detect import (
    DetectorName,
    DlibDetector,
    HaarDetector,
    make_detector,
)
from tests.photos import astronaut, blurred, cameraman, cat, coffee, darkened, two_people

pytest.importorskip("cv2")
pytestmark = pytest.mark.slow  # ~0.5 s a photo on one core


@pytest.fixture(scope="module")
def dlib_detector() -> DlibDetector:
    pytest.importorskip("dlib")
    return DlibDetector()


@pytest.mark.parametrize(
    ("photo", "faces"),
    [
        (astronaut, 1),
        (cameraman, 1),
        (cat, 0),
        (coffee, 0),
        (two_people, 2),
        (lambda: blurred(astronaut(), 6), 1),
        (lambda: darkened(astronaut()), 1),
    ],
    ids=["astronaut", "cameraman", "cat", "coffee", "two people", "blurred", "darkened"],
)
def test_dlib_counts_the_faces(dlib_detector: DlibDetector, photo, faces: int) -> None:
    assert len(dlib_detector.detect(photo())) == faces


def test_dlib_boxes_are_in_the_photos_own_pixels(dlib_detector: DlibDetector) -> None:
    [face] = dlib_detector.detect(astronaut())
    assert 330 < face.x < 390 and 140 < face.y < 200  # her face, at 1024 px
    assert 140 < face.w < 220
    left, right = sorted(dlib_detector.detect(two_people()), key=lambda b: b.x)
    assert right.x > 1024 > left.x + left.w  # one face in each half


def test_the_haar_floor_finds_the_astronaut_and_no_cat() -> None:
    haar = HaarDetector()
    assert len(haar.detect(astronaut())) == 1
    assert haar.detect(cat()) == []


def test_choice_of_detector() -> None:
    assert make_detector("haar").name is DetectorName.HAAR
    assert make_detector(DetectorName.AUTO).name in (DetectorName.DLIB, DetectorName.HAAR)
    with pytest.raises(ValueError):
        make_detector("yunet")
