"""Photo intake: turn whatever a user sends into a training photo, or a clear refusal.

Pure functions over bytes (no disk, no network), so a frontend can run `prepare_photo` in a
worker thread and the service decides what to store. The rules come from the training side:
SDXL LoRA+TI is trained at 1024 px, so smaller photos are refused (chat apps shrink photos;
sending them *as a file* keeps the full size), and 4-20 photos make one set.

Everything that reaches the backend is normalised: EXIF rotation applied (phones store
portraits sideways), RGB, JPEG q95, no metadata (EXIF GPS is where people live), long side
capped since training never looks at more pixels. A JPEG that needs none of that keeps its
image data as sent, with only its metadata cut out.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO

from PIL import Image, ImageOps

from backends.photo_quality import PhotoError, PhotoQuality, assess
from bot.core.errors import UserError
from bot.core.texts import text
from bot.core.texts.languages import set_language

MIN_SIDE_PX = 1024
MAX_SIDE_PX = 2048
"""Long side of a stored photo; wider panoramas keep MIN_SIDE_PX on the short side instead."""
MIN_PHOTOS = 4
MAX_PHOTOS = 20
MAX_FILE_BYTES = 20 * 1024 * 1024
"""Telegram's Bot API refuses to download bigger files, so nothing bigger can be handled."""
MAX_PIXELS = 64_000_000
"""Checked from the header before decoding: a 64 MP RGBA decode is already 256 MB of memory."""
_MEGAPIXELS = MAX_PIXELS // 1_000_000
JPEG_QUALITY = 95

ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
"""Photo formats only: Pillow also opens EPS/PSD/ICO..., which no camera sends and which widen
the attack surface (EPS even runs Ghostscript)."""

_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


class RejectReason(StrEnum):
    """Why a photo was refused; the values are stable strings, safe to store and log."""

    TOO_SMALL = "too_small"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT = "corrupt"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    DUPLICATE = "duplicate"
    OVER_CAP = "over_cap"
    UNSUITABLE = "unsuitable"
    """Inspection refused it (no face, several people): bot.core.inspection."""


class PhotoRejected(UserError):
    """A photo that cannot be used; `message` tells the user what went wrong and what to do."""

    def __init__(self, reason: RejectReason, message: str, filename: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.filename = filename


class NotEnoughPhotos(UserError):
    """Training was asked for with too few photos; `message` says how many more to send."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.missing = MIN_PHOTOS - count
        super().__init__(
            text("photos.not_enough", count=count, min_photos=MIN_PHOTOS, missing=self.missing)
        )


def photo_subject(filename: str | None) -> str:
    """How a refusal names the photo: by its file name when it has one."""
    return text("photo.subject_named", filename=filename) if filename else text("photo.subject")


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo ready to store and upload. `sha256` is of the bytes the user sent, so the same
    photo sent twice is recognised even though normalising is not bit-for-bit stable."""

    sha256: str
    width: int
    height: int
    data: bytes = field(repr=False)
    original_bytes_len: int
    content_type: str = "image/jpeg"

    @property
    def filename(self) -> str:
        """A stable upload name that says nothing about the user."""
        return f"{self.sha256[:16]}.jpg"


def prepare_photo(data: bytes, filename: str | None = None) -> PreparedPhoto:
    """Check and normalise one photo; raises PhotoRejected with a user-facing message.

    Cheap checks run first (byte size, header, pixel count) so hostile files are refused
    before any pixel is decoded.
    """
    return _prepare(data, filename)[0]


@dataclass(frozen=True)
class MeasuredPhoto:
    """A prepared photo with its model-free checks (sharpness, exposure, perceptual hash),
    made from the pixels it was prepared from: one decode for both."""

    photo: PreparedPhoto
    quality: PhotoQuality | None
    """Measured against no other photo (`near_duplicate_of` is None): the set it joins is
    known where it arrives. None when the checks could not be made."""


def prepare_and_measure(data: bytes, filename: str | None, language: str) -> PhotoOutcome:
    """`prepare_photo` and the checks of its result, or the refusal in `language`: the
    photo process's work for each photo it is sent (bot/core/photo_process.py)."""
    set_language(language)
    try:
        photo, pixels = _prepare(data, filename)
    except PhotoRejected as exc:
        return Rejection(exc.reason, exc.message, filename)
    try:
        quality: PhotoQuality | None = assess(pixels)
    except (PhotoError, ValueError):
        quality = None
    return MeasuredPhoto(photo, quality)


def _prepare(data: bytes, filename: str | None) -> tuple[PreparedPhoto, Image.Image]:
    """The prepared photo, and the upright, resized pixels its data was encoded from."""
    subject = photo_subject(filename)
    if len(data) > MAX_FILE_BYTES:
        raise file_too_large(len(data), filename)
    image = _open(data, subject, filename)
    target = _target_size(*image.size)
    image.draft(None, target)  # JPEG only: decode at a reduced DCT scale, never below target
    _decode(image, subject, filename)
    image, turned = _upright(image)
    if turned:
        target = (target[1], target[0])
    _check_short_side(image, subject, filename)
    out = _normalise(image, target, subject, filename)
    as_sent = out is image and image.format == "JPEG" and jpeg_without_metadata(data)
    photo = PreparedPhoto(
        sha256=hashlib.sha256(data).hexdigest(),
        width=out.width,
        height=out.height,
        data=as_sent or _encode_jpeg(out),
        original_bytes_len=len(data),
    )
    return photo, out


def _open(data: bytes, subject: str, filename: str | None) -> Image.Image:
    """Identify the file from its header and refuse oversized pixel counts without decoding.

    Pillow itself only warns above its MAX_IMAGE_PIXELS (and raises at twice that); our own
    MAX_PIXELS check is stricter, so a warning never lets an image through. The warning is
    caught in case the process made it an error; it is not forced to one here because
    `warnings.catch_warnings` is not thread-safe and intake runs in worker threads.
    """
    Image.init()
    formats = [f for f in ACCEPTED_FORMATS if f in Image.OPEN]
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(subject, filename) from exc
    except Exception as exc:  # UnidentifiedImageError mostly; plugins raise others on junk
        raise _not_an_image(data, subject, filename) from exc
    if image.width * image.height > MAX_PIXELS:
        raise _too_many_pixels(subject, filename)
    return image


def _decode(image: Image.Image, subject: str, filename: str | None) -> None:
    """Decode every pixel now: a truncated upload must be refused, not trained on grey."""
    try:
        image.load()
    except Exception as exc:  # Pillow's decoders raise a zoo of types for damaged data
        raise PhotoRejected(RejectReason.CORRUPT, corrupt(filename).message, filename) from exc


def corrupt(filename: str | None) -> Rejection:
    """The refusal of a photo whose data cannot be decoded (or whose decoding crashed)."""
    return Rejection(
        RejectReason.CORRUPT, text("photo.corrupt", subject=photo_subject(filename)), filename
    )


def _upright(image: Image.Image) -> tuple[Image.Image, bool]:
    """Apply EXIF orientation; True when width and height swapped. Unreadable EXIF is no
    reason to refuse a photo: it is then used as stored."""
    try:
        orientation = int(image.getexif().get(_ORIENTATION_TAG, 1))
        if orientation == 1:  # upright already: exif_transpose would copy every pixel
            return image, False
        upright = ImageOps.exif_transpose(image)
    except Exception:
        return image, False
    return upright, orientation in _SWAPPING_ORIENTATIONS


def _target_size(width: int, height: int) -> tuple[int, int]:
    """Scale so the long side is MAX_SIDE_PX, but never the short side below MIN_SIDE_PX."""
    short, long = min(width, height), max(width, height)
    scale = min(1.0, max(MAX_SIDE_PX / long, MIN_SIDE_PX / short))
    if scale == 1.0:
        return width, height
    return max(MIN_SIDE_PX, round(width * scale)), max(MIN_SIDE_PX, round(height * scale))


def _check_short_side(image: Image.Image, subject: str, filename: str | None) -> None:
    """Measured after rotation, so the size we report is the one the user sees."""
    if min(image.size) < MIN_SIDE_PX:
        message = text(
            "photo.too_small",
            subject=subject,
            width=image.width,
            height=image.height,
            min_side=MIN_SIDE_PX,
        )
        raise PhotoRejected(RejectReason.TOO_SMALL, message, filename)


def _normalise(
    image: Image.Image, target: tuple[int, int], subject: str, filename: str | None
) -> Image.Image:
    """RGB at the target size; exotic modes Pillow can't convert (e.g. LAB TIFF) are refused."""
    try:
        out = _to_rgb(image)
    except (ValueError, OSError, KeyError) as exc:
        message = text("photo.unreadable_colours", subject=subject)
        raise PhotoRejected(RejectReason.NOT_AN_IMAGE, message, filename) from exc
    if out.size != target:
        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return out


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode: transparency onto white, 16-bit scaled down rather than clipped."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        wide = image.convert("I") if image.mode.startswith("I;16") else image
        factor = _deep_scale(wide)
        return wide.point(lambda v: v * factor).convert("L").convert("RGB")
    if image.mode == "RGB" and not image.info.get("icc_profile"):
        return image  # convert() would copy every pixel, holding the interpreter lock
    return _icc_to_srgb(image) or image.convert("RGB")


def _deep_scale(image: Image.Image) -> float:
    """Factor to 8 bits: 16-bit data is 0..65535; deeper or float data is fitted to its max."""
    high = float(image.getextrema()[1] or 0)  # type: ignore[arg-type]
    if high <= 255:
        return 1.0
    return 1 / 257 if high <= 65535 else 255 / high


def _icc_to_srgb(image: Image.Image) -> Image.Image | None:
    """Apply an embedded colour profile (iPhone Display P3, print CMYK) so colours stay true;
    None where there is none or LittleCMS can't use it, and the plain conversion is used."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK"):
        return None
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except Exception:  # missing LittleCMS, a broken or mismatched profile
        return None


def _encode_jpeg(image: Image.Image) -> bytes:
    """JPEG without any metadata: Pillow copies a source's comment unless `info` is empty.

    Encoded into a file with a descriptor, not a BytesIO: Pillow releases the GIL only while
    it encodes into a real file. Into a BytesIO it held it for the whole encode (~5-10 ms a
    photo), and the bot's event loop, answering every chat, stood still meanwhile."""
    image.info.clear()
    with _memory_file() as buffer:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        buffer.seek(0)
        return buffer.read()


_JPEG_KEPT_SEGMENTS = frozenset({0xE0, 0xEE})
"""JFIF (density) and Adobe (how to read the colour components): the only application
segments a decoder needs. EXIF, XMP, IPTC, ICC, maker notes and comments are dropped."""
_JPEG_START_OF_SCAN = 0xDA
_JPEG_END = b"\xff\xd9"


def jpeg_without_metadata(data: bytes) -> bytes | None:
    """The JPEG `data` with every metadata segment cut out and nothing after its end (phones
    append motion-photo videos there), its image data untouched: a photo that is upright, RGB,
    without a colour profile and already the stored size needs no decode-and-encode, which
    cost a photo's intake more than any check and lost quality on every pass. None when the
    segment structure is not the plain one this reads (the photo is then re-encoded)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    kept = [b"\xff\xd8"]
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > len(data):
            return None
        if marker == _JPEG_START_OF_SCAN:
            end = data.find(_JPEG_END, at)  # never inside entropy-coded data (0xFF is stuffed)
            if end < 0:
                return None
            kept.append(data[at : end + 2])
            return b"".join(kept)
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE) or marker in _JPEG_KEPT_SEGMENTS:
            kept.append(data[at : at + 2 + length])
        at += 2 + length
    return None


def _memory_file() -> IO[bytes]:
    """An anonymous file in memory (Linux), else an unnamed temporary file."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("photo", os.MFD_CLOEXEC), "w+b")
    return tempfile.TemporaryFile()


def file_too_large(size: int, filename: str | None) -> PhotoRejected:
    """Over MAX_FILE_BYTES: refused before anything is read (frontends check sizes first)."""
    message = text(
        "photo.file_too_large", subject=photo_subject(filename), megabytes=size / 1024 / 1024
    )
    return PhotoRejected(RejectReason.FILE_TOO_LARGE, message, filename)


def _too_many_pixels(subject: str, filename: str | None) -> PhotoRejected:
    message = text("photo.too_many_pixels", subject=subject, megapixels=_MEGAPIXELS)
    return PhotoRejected(RejectReason.TOO_MANY_PIXELS, message, filename)


def _not_an_image(data: bytes, subject: str, filename: str | None) -> PhotoRejected:
    """HEIC gets its own hint: it is what iPhones send when a photo is shared as a file."""
    heif = data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS
    if heif or (filename or "").lower().endswith((".heic", ".heif")):
        message = text("photo.not_an_image_heic", subject=subject)
    else:
        message = text("photo.not_an_image", subject=subject)
    return PhotoRejected(RejectReason.NOT_AN_IMAGE, message, filename)


def check_ready_to_train(count: int) -> None:
    """Refuse to start a training that would fail or be poor: fewer than MIN_PHOTOS photos."""
    if count < MIN_PHOTOS:
        raise NotEnoughPhotos(count)


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    message: str
    filename: str | None = None


PhotoOutcome = MeasuredPhoto | Rejection
"""What the photo process makes of one photo."""


class IntakeBatch:
    """Photos arriving together (a Telegram album is many updates), summarised as ONE message.

    The service creates a batch from the pending set's hashes and count, feeds each photo as it
    arrives, stores what it accepts and edits a single counter message with `summary()`. It
    prepares the photos in the photo process (`prepare_and_measure`) and hands the result to
    `take`, so the set bookkeeping stays on the event loop, where two album photos can never
    race for the last slot.
    """

    def __init__(self, existing_hashes: Iterable[str] = (), existing_count: int | None = None):
        self._hashes = set(existing_hashes)
        self.existing_count = len(self._hashes) if existing_count is None else existing_count
        self.accepted: list[PreparedPhoto] = []
        self.rejected: list[Rejection] = []
        self.notes: list[str] = []
        """Per-photo inspection lines (issue 15): why a photo was refused or what to improve."""

    @property
    def received(self) -> int:
        return len(self.accepted) + len(self.rejected)

    @property
    def set_count(self) -> int:
        """Photos in the user's set including this batch's accepted ones."""
        return self.existing_count + len(self.accepted)

    def take(self, outcome: PhotoOutcome, filename: str | None = None) -> PreparedPhoto | None:
        """What the photo process made of one photo: its refusal recorded, or the photo put
        to the set rules (`add_prepared`); None when it was refused."""
        if isinstance(outcome, Rejection):
            self.reject(outcome.reason, outcome.message, filename)
            return None
        return self.add_prepared(outcome.photo, filename)

    def add_prepared(
        self, photo: PreparedPhoto, filename: str | None = None
    ) -> PreparedPhoto | None:
        """Apply the set rules (duplicates first, then the cap) to an already prepared photo."""
        if photo.sha256 in self._hashes:
            self.reject(RejectReason.DUPLICATE, text("photo.duplicate"), filename)
            return None
        if self.set_count >= MAX_PHOTOS:
            message = text("photo.over_cap", max_photos=MAX_PHOTOS)
            self.reject(RejectReason.OVER_CAP, message, filename)
            return None
        self._hashes.add(photo.sha256)
        self.accepted.append(photo)
        return photo

    def reject(self, reason: RejectReason, message: str, filename: str | None = None) -> None:
        """Record a refusal decided elsewhere too, e.g. a file Telegram won't let us download."""
        self.rejected.append(Rejection(reason, message, filename))

    def withdraw(self, photo: PreparedPhoto, refusal: str, filename: str | None = None) -> None:
        """Inspection refused an accepted photo (issue 15): it leaves the set, with its line."""
        self.accepted.remove(photo)
        self._hashes.discard(photo.sha256)
        self.reject(RejectReason.UNSUITABLE, refusal, filename)
        self.notes.append(refusal)

    def summary(self) -> str:
        """One message for the whole batch, then the inspection's lines; a lone refused photo
        gets its full explanation."""
        notes = "".join(f"\n{note}" for note in self.notes if note not in self._lone())
        return self._counts() + notes

    def _lone(self) -> list[str]:
        return [self.rejected[0].message] if self.received == 1 and self.rejected else []

    def _counts(self) -> str:
        next_step = self._next_step()
        if self.received == 1 and self.rejected:
            return text(
                "photos.lone_refusal", refusal=self.rejected[0].message, next_step=next_step
            )
        added, total = len(self.accepted), self.set_count
        if added:
            parts = [text("photos.added", added=added, total=total, max_photos=MAX_PHOTOS)]
        else:
            parts = [text("photos.none_added", total=total, max_photos=MAX_PHOTOS)]
        counts = Counter(r.reason for r in self.rejected)
        for reason in RejectReason:  # stable order, whatever order the photos came in
            if n := counts[reason]:
                parts.append(_refused(reason, n))
        return text(
            "photos.summary", count=self.received, parts=", ".join(parts), next_step=next_step
        )

    def _next_step(self) -> str:
        count = self.set_count
        if count < MIN_PHOTOS:
            return text("photos.send_more", missing=MIN_PHOTOS - count, min_photos=MIN_PHOTOS)
        if count >= MAX_PHOTOS:
            return text("photos.set_full")
        return text("photos.ready", room=MAX_PHOTOS - count)


def _refused(reason: RejectReason, count: int) -> str:
    """How many photos were refused for `reason`, in a few words (a part of the summary)."""
    return text(
        f"photos.refused.{reason}", count=count, megapixels=_MEGAPIXELS, max_photos=MAX_PHOTOS
    )
