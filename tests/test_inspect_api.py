"""The worker's `POST /images/inspect` over HTTP, on real photographs and copies of them.

The bot's own Astria client (`inspect_image`) and plain HTTP drive the real worker app.
"""

from __future__ import annotations

import pytest

from backends.base import AuthError, Inspection, TrainingImage, ValidationError
from backends.findings import Finding
from tests.imagegen import png_claiming_size
from tests.photos import astronaut, blurred, cat, darkened, jpeg, two_people
from tests.worker_fixtures import API_KEY
from tests.worker_modes import (
    ServedWorker,
    WorkerMaker,
    client_for,
    raw_client,
    worker,
    worker_maker,
    worker_mode,
)

pytest.importorskip("cv2")

__all__ = ["worker", "worker_maker", "worker_mode"]  # fixtures: each test runs single and fleet
pytestmark = pytest.mark.slow  # a face detection per photo (~0.5 s on one core)


def photo(image, name: str = "photo.jpg", quality: int = 90) -> TrainingImage:
    return TrainingImage(name, jpeg(image, quality))


async def inspect(
    worker: ServedWorker, name: str, image, hashes: tuple[str, ...] = ()
) -> Inspection:
    async with client_for(worker) as client:
        return await client.inspect_image(name, photo(image), hashes=hashes)


async def test_one_person_is_a_good_photo(worker: ServedWorker) -> None:
    result = await inspect(worker, "woman", astronaut())
    assert result.name == "woman"
    assert result.faces == 1
    assert result.findings == frozenset()
    assert 0.12 < (result.face_fraction or 0) < 0.3
    assert result.sharpness and result.sharpness > 25
    assert result.phash and len(result.phash) == 16
    assert result.attributes == {}  # nothing a packaged model can tell: all "NONE"
    raw = result.raw
    assert raw["glasses"] == "NONE" and raw["eye_color"] == "NONE"
    assert raw["blurry"] is False and raw["includes_multiple_people"] is False
    assert raw["full_body_image_or_longshot"] is False
    assert raw["sharpness_on"] == "face"
    assert raw["width"] == raw["height"] == 1024
    [[x, y, w, h]] = raw["face_boxes"]
    assert 330 < x < 390 and 140 < y < 200 and 140 < w < 220 and abs(w - h) < 20
    assert "wearing_sunglasses" not in raw  # unknown booleans are left out


async def test_two_people_a_cat_and_no_face(worker: ServedWorker) -> None:
    two = await inspect(worker, "man", two_people())
    assert two.faces == 2 and Finding.MULTIPLE_FACES in two.findings
    assert two.raw["includes_multiple_people"] is True

    pet = await inspect(worker, "cat", cat())
    assert pet.name == "cat" and pet.faces == 0
    assert Finding.NO_FACE not in pet.findings  # pets are not judged by human faces

    person = await inspect(worker, "man", cat())
    assert person.name is None and person.raw["name"] == "NONE"
    assert Finding.NO_FACE in person.findings


async def test_blurred_and_darkened_photos(worker: ServedWorker) -> None:
    soft = await inspect(worker, "woman", blurred(astronaut(), 6))
    assert Finding.BLURRY in soft.findings and soft.raw["blurry"] is True
    dark = await inspect(worker, "woman", darkened(astronaut()))
    assert dark.faces == 1
    assert Finding.TOO_DARK in dark.findings
    assert Finding.BLURRY not in dark.findings


async def test_near_duplicates_by_the_hashes_of_the_set(worker: ServedWorker) -> None:
    first = await inspect(worker, "woman", astronaut())
    cat_photo = await inspect(worker, "cat", cat(), hashes=(first.phash or "",))
    assert cat_photo.near_duplicate_of is None
    hashes = (cat_photo.phash or "", first.phash or "")
    async with client_for(worker) as client:
        again = await client.inspect_image(
            "woman", photo(astronaut(), "again.jpg", quality=50), hashes=hashes
        )
    assert again.near_duplicate_of == 1
    assert again.findings == {Finding.NEAR_DUPLICATE}


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [
        ({}, {"file": ("a.jpg", jpeg(astronaut()))}, "name can't be blank"),
        ({"name": "man"}, None, "file can't be blank"),
        ({"name": "man", "file_url": "http://169.254.169.254/x"}, None, "file_url is not"),
        ({"name": "man"}, {"file": ("a.jpg", b"not an image")}, "not an image"),
        ({"name": "man"}, {"file": ("a.jpg", jpeg(astronaut())[:5000])}, "damaged or cut"),
        ({"name": "man"}, {"file": ("a.png", png_claiming_size(30_000, 30_000))}, "megapixels"),
        (
            {"name": "man", "hashes[]": ["0123456789abcdef", "nope"]},
            {"file": ("a.jpg", jpeg(cat()))},
            "not a 16-hex-digit photo hash",
        ),
    ],
    ids=["no name", "no file", "file_url", "not an image", "truncated", "pixel bomb", "bad hash"],
)
async def test_bad_requests_are_422_with_a_clear_message(
    worker: ServedWorker, data: dict, files: dict | None, message: str
) -> None:
    async with raw_client(worker) as http:
        response = await http.post("/images/inspect", data=data, files=files)
    assert response.status_code == 422
    assert message in response.json()["error"]


async def test_json_and_huge_bodies_are_422_before_anything_is_decoded(
    worker: ServedWorker,
) -> None:
    async with raw_client(worker) as http:
        as_json = await http.post("/images/inspect", json={"name": "man", "file": "aGk="})
        huge = await http.post(
            "/images/inspect",
            content=b"x" * (31 * 1024 * 1024),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert as_json.status_code == 422 and "multipart/form-data" in as_json.json()["error"]
    assert huge.status_code == 422 and "larger than 30 MB" in huge.json()["error"]


async def test_the_client_raises_validation_error_and_auth_is_required(
    worker_maker: WorkerMaker,
) -> None:
    async with worker_maker.started(api_key=API_KEY) as worker:
        async with client_for(worker) as client:
            with pytest.raises(AuthError):
                await client.inspect_image("man", photo(cat()))
        async with client_for(worker, API_KEY) as client:
            with pytest.raises(ValidationError, match="not an image"):
                await client.inspect_image("man", TrainingImage("x.jpg", b"junk"))
