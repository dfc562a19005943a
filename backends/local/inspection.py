"""`POST /images/inspect` on our worker: Astria's photo inspection, answered without a cloud.

Request (as Astria's, reference/astria-api.md): multipart or urlencoded `name` (the class the
tune will have: `man`, `woman`, `cat` ...) and `file` (the photo). `file_url` is refused: the
worker fetches no URL a client names. Our addition: `hashes[]` (or `hashes`, comma-separated),
the perceptual hashes (`phash` of earlier answers) of the other photos of the set; the answer's
`near_duplicate_of` is then the index of the one this photo nearly repeats. The worker keeps
nothing: inspecting a set is one call per photo, each with the hashes of those before.

Answer: Astria's documented attribute object where we can tell, plus our own measures:
- `name`: for person classes the class when a face is found, "NONE" when none is; other
  classes (pets, styles) are not checked and echo the class asked for.
- `blurry`, `includes_multiple_people`, `full_body_image_or_longshot`: from our measures.
- `ethnicity`, `age`, `glasses`, `eye_color`, `hair_*`, `facial_hair`, `is_bald`: "NONE" (no
  model that ships in a package tells them here); `funny_face`, `wearing_sunglasses`,
  `wearing_hat`, `selfie` are left out ("some attributes may not be returned", says Astria).
- ours: `faces`, `face_boxes` ([x, y, w, h] in the photo's pixels, EXIF rotation applied),
  `face_fraction` (largest face height / photo height), `sharpness` and `sharpness_on`
  (`face` or `photo`), `exposure` (`mean`, `dark_share`, `bright_share`, 0..1), `phash`,
  `near_duplicate_of`, `width`, `height`, `detector`, and `findings` (backends.findings names).

Errors: 422 `{"error": ...}` for a missing name or file, an unreadable, damaged or oversized
photo, or a malformed hash; never a 500 for what a client sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backends.findings import PERSON_CLASSES, Finding
from backends.local.errors import RequestError
from backends.local.face_detect import FaceDetector, make_detector
from backends.photo_quality import (
    FACE_TOO_SMALL_BELOW,
    PhotoError,
    PhotoHash,
    PhotoQuality,
    Region,
    assess,
    face_findings,
    face_fraction,
    open_photo,
)

MAX_INSPECT_BYTES = 30 * 1024 * 1024
"""Largest photo accepted (as POST /tunes); a bigger body is refused before it is read."""
MAX_HASHES = 200
UNKNOWN = "NONE"
UNKNOWN_ATTRIBUTES = (
    "ethnicity",
    "age",
    "glasses",
    "eye_color",
    "hair_color",
    "hair_length",
    "hair_style",
    "facial_hair",
    "is_bald",
)
"""Astria's string attributes that no packaged model here can tell: always "NONE"."""


class InspectError(ValueError):
    """The request cannot be inspected; answered 422 with this message."""


@dataclass(frozen=True)
class PhotoReport:
    """Everything the worker can tell about one photo of class `class_name`."""

    class_name: str
    faces: list[Region]
    quality: PhotoQuality
    detector: str

    @property
    def findings(self) -> frozenset[Finding]:
        size = (self.quality.width, self.quality.height)
        return self.quality.findings | face_findings(self.faces, size, class_name=self.class_name)

    def to_json(self) -> dict[str, Any]:
        quality = self.quality
        size = (quality.width, quality.height)
        fraction = face_fraction(self.faces[0], size) if self.faces else None
        person = self.class_name.lower() in PERSON_CLASSES
        return {
            "name": self.class_name if self.faces or not person else UNKNOWN,
            **dict.fromkeys(UNKNOWN_ATTRIBUTES, UNKNOWN),
            "blurry": quality.blurry,
            "includes_multiple_people": len(self.faces) > 1,
            "full_body_image_or_longshot": fraction is not None and fraction < FACE_TOO_SMALL_BELOW,
            "faces": len(self.faces),
            "face_boxes": [list(box) for box in self.faces],
            "face_fraction": None if fraction is None else round(fraction, 4),
            "sharpness": round(quality.sharpness, 1),
            "sharpness_on": "face" if quality.sharpness_on_face else "photo",
            "exposure": {
                "mean": round(quality.exposure.mean, 4),
                "dark_share": round(quality.exposure.dark_share, 4),
                "bright_share": round(quality.exposure.bright_share, 4),
            },
            "phash": str(quality.phash),
            "near_duplicate_of": quality.near_duplicate_of,
            "width": quality.width,
            "height": quality.height,
            "detector": self.detector,
            "findings": sorted(self.findings),
        }


def inspect_photo(
    image: Image.Image,
    class_name: str,
    detector: FaceDetector,
    others: Sequence[PhotoHash] = (),
) -> PhotoReport:
    """Detect faces, then measure sharpness and exposure on the largest one (or the photo)."""
    faces = detector.detect(image)
    quality = assess(image, faces[0] if faces else None, others)
    return PhotoReport(class_name, faces, quality, str(detector.name))


class Inspector:
    """The endpoint: one inspection at a time (each takes a CPU core for ~0.5 s), off the
    event loop; the detector is made on the first request."""

    def __init__(self, detector_choice: str) -> None:
        self._choice = detector_choice
        self._detector: FaceDetector | None = None
        self._one_at_a_time = asyncio.Semaphore(1)

    async def handle(self, request: Request) -> Response:
        try:
            class_name, content, others = await _read_request(request)
            async with self._one_at_a_time:
                report = await asyncio.to_thread(self._inspect, content, class_name, others)
        except (InspectError, PhotoError) as exc:  # answered 422 by http.py's handlers
            raise RequestError(str(exc)) from None
        return JSONResponse(report.to_json())

    def _inspect(self, content: bytes, class_name: str, others: list[PhotoHash]) -> PhotoReport:
        if self._detector is None:
            self._detector = make_detector(self._choice)
        return inspect_photo(open_photo(content), class_name, self._detector, others)


def inspect_endpoint(detector_choice: str) -> Callable[[Request], Awaitable[Response]]:
    return Inspector(detector_choice).handle


async def _read_request(request: Request) -> tuple[str, bytes, list[PhotoHash]]:
    """(class name, photo bytes, other photos' hashes) from a multipart/urlencoded form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InspectError("send multipart/form-data with `name` and `file` (the photo)")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_INSPECT_BYTES + 64 * 1024:
        raise InspectError(f"the photo is larger than {MAX_INSPECT_BYTES // (1024 * 1024)} MB")
    try:
        form = await request.form(max_files=1, max_fields=MAX_HASHES + 10)
    except Exception as exc:  # malformed multipart, too many parts
        raise InspectError(f"cannot read the form: {exc}") from None
    try:
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InspectError("name can't be blank: the class of the tune (man, woman, cat ...)")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            if form.get("file_url"):
                raise InspectError("file_url is not supported by this worker: send the file")
            raise InspectError("file can't be blank: send the photo as a file part")
        content = await upload.read(MAX_INSPECT_BYTES + 1)
        if len(content) > MAX_INSPECT_BYTES:
            raise InspectError(f"the photo is larger than {MAX_INSPECT_BYTES // (1024 * 1024)} MB")
        hashes = [
            value
            for key, value in form.multi_items()
            if key in ("hashes", "hashes[]") and isinstance(value, str)
        ]
        others = [
            PhotoHash.parse(text) for value in hashes for text in value.split(",") if text.strip()
        ]
        if len(others) > MAX_HASHES:
            raise InspectError(f"at most {MAX_HASHES} hashes of other photos")
    except ValueError as exc:
        raise InspectError(str(exc)) from None
    finally:
        await form.close()
    return name.strip().lower(), content, others
