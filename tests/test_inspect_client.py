"""The client's `inspect_image` against the fake hosted Astria (the remote side), over HTTP:
the multipart request Astria documents, and Astria's answer mapped onto our findings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from backends.astria import AstriaClient, parse_inspection
from backends.base import TrainingImage, ValidationError
from backends.findings import Finding
from tests.fakes.astria_server import FakeAstria

KEY = "sd_inspect_key"


@pytest.fixture
def fake() -> Iterator[FakeAstria]:
    with FakeAstria(api_key=KEY) as server:
        yield server


@pytest.fixture
async def client(fake: FakeAstria) -> AsyncIterator[AstriaClient]:
    async with AstriaClient(KEY, fake.url, timeout=5.0) as c:
        yield c


def photo(content: bytes = b"\xff\xd8 a jpeg") -> TrainingImage:
    return TrainingImage("me.jpg", content)


async def test_the_request_is_astrias_multipart(fake: FakeAstria, client: AstriaClient) -> None:
    await client.inspect_image("woman", photo(), hashes=("00ff00ff00ff00ff",))
    [request] = fake.find_requests("POST", "/images/inspect")
    assert request.form["name"] == ["woman"]
    assert request.form["hashes[]"] == ["00ff00ff00ff00ff"]
    assert [(field, name, content) for field, name, content in request.files] == [
        ("file", "me.jpg", b"\xff\xd8 a jpeg")
    ]
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_a_good_photo_gives_characteristics_and_no_findings(client: AstriaClient) -> None:
    result = await client.inspect_image("woman", photo())
    assert result.name == "woman"
    assert result.findings == frozenset()
    assert result.attributes == {
        "age": "30 yo",
        "ethnicity": "caucasian",
        "eye_color": "brown eyes",
        "hair_color": "brunette",
        "hair_length": "medium hair",
        "hair_style": "wavy hair",
    }
    assert result.faces is None and result.phash is None  # hosted Astria measures nothing


async def test_astrias_flags_become_findings(fake: FakeAstria, client: AstriaClient) -> None:
    group = b"group photo"
    fake.set_inspection({"includes_multiple_people": True, "wearing_sunglasses": True}, group)
    fake.set_inspection({"blurry": True, "wearing_hat": True, "funny_face": True})
    assert (await client.inspect_image("man", photo(group))).findings == {
        Finding.MULTIPLE_FACES,
        Finding.SUNGLASSES,
    }
    assert (await client.inspect_image("man", photo())).findings == {
        Finding.BLURRY,
        Finding.HAT,
        Finding.FUNNY_FACE,
    }


async def test_no_person_seen_and_another_class(fake: FakeAstria, client: AstriaClient) -> None:
    fake.set_inspection({"name": ""})
    nobody = await client.inspect_image("man", photo())
    assert nobody.name is None and Finding.NO_FACE in nobody.findings
    assert Finding.NO_FACE not in (await client.inspect_image("dog", photo())).findings
    fake.set_inspection({"name": "woman", "full_body_image_or_longshot": True})
    other = await client.inspect_image("man", photo())
    assert other.findings == {Finding.WRONG_CLASS, Finding.FACE_TOO_SMALL}


async def test_the_fake_refuses_what_astria_refuses(fake: FakeAstria) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers) as http:
        no_file = await http.post("/images/inspect", data={"name": "man"})
        no_name = await http.post("/images/inspect", files={"file": ("a.jpg", b"x")})
        by_url = await http.post("/images/inspect", data={"name": "man", "file_url": "https://x"})
    assert (no_file.status_code, no_file.json()) == (422, {"error": "File can't be blank"})
    assert (no_name.status_code, no_name.json()) == (422, {"error": "Name can't be blank"})
    assert by_url.status_code == 200 and by_url.json()["name"] == "man"


async def test_a_422_is_a_validation_error(fake: FakeAstria, client: AstriaClient) -> None:
    fake.fail_next("POST", "/images/inspect", 422, {"error": "Image is unreadable"})
    with pytest.raises(ValidationError, match="Image is unreadable"):
        await client.inspect_image("man", photo())


def test_our_workers_measures_are_parsed() -> None:
    answer = {
        "name": "NONE",
        "glasses": "NONE",
        "faces": 0,
        "face_fraction": None,
        "sharpness": 12.5,
        "phash": "00ff00ff00ff00ff",
        "near_duplicate_of": 2,
        "findings": ["blurry", "near_duplicate", "a finding from a newer worker"],
        "detector": "dlib",
    }
    result = parse_inspection(answer, "man")
    assert result.findings == {Finding.NO_FACE, Finding.BLURRY, Finding.NEAR_DUPLICATE}
    assert (result.faces, result.sharpness, result.near_duplicate_of) == (0, 12.5, 2)
    assert result.phash == "00ff00ff00ff00ff" and result.attributes == {}
