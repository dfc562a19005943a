"""Photo intake against real Pillow decoding of generated (and deliberately broken) files."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from PIL import ExifTags, Image, ImageFile

from bot.core.photos import (
    MAX_FILE_BYTES,
    MAX_PHOTOS,
    MAX_SIDE_PX,
    MIN_SIDE_PX,
    IntakeBatch,
    NotEnoughPhotos,
    PhotoRejected,
    PreparedPhoto,
    RejectReason,
    check_ready_to_train,
    prepare_and_measure,
    prepare_photo,
)
from tests import imagegen


def decoded(photo: PreparedPhoto) -> Image.Image:
    image = Image.open(io.BytesIO(photo.data))
    image.load()
    return image


def rejection(data: bytes, filename: str | None = None) -> PhotoRejected:
    with pytest.raises(PhotoRejected) as info:
        prepare_photo(data, filename)
    return info.value


def is_red(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 60 and b < 60


# --- single photos ---------------------------------------------------------------------------


def test_small_photo_is_refused_with_its_size_and_the_send_as_file_hint() -> None:
    error = rejection(imagegen.jpeg_bytes(800, 600))
    assert error.reason is RejectReason.TOO_SMALL
    assert "800×600" in error.message
    assert str(MIN_SIDE_PX) in error.message
    assert "file" in error.message


def test_small_side_is_measured_after_exif_rotation() -> None:
    # Stored 1400x900 with orientation 6: the user sees 900x1400 and that is what we report.
    error = rejection(imagegen.jpeg_bytes(1400, 900, orientation=6), "IMG_0042.jpg")
    assert error.reason is RejectReason.TOO_SMALL
    assert "900×1400" in error.message
    assert "IMG_0042.jpg" in error.message


def test_exactly_1024_is_accepted_and_normalised_to_jpeg() -> None:
    data = imagegen.png_bytes(1024, 1024)
    photo = prepare_photo(data)
    assert (photo.width, photo.height) == (1024, 1024)
    assert photo.content_type == "image/jpeg"
    assert photo.original_bytes_len == len(data)
    assert len(photo.sha256) == 64
    image = decoded(photo)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1024, 1024))


def test_large_photo_is_scaled_down_but_keeps_the_short_side() -> None:
    photo = prepare_photo(imagegen.jpeg_bytes(6000, 4000))
    assert max(photo.width, photo.height) == MAX_SIDE_PX
    assert min(photo.width, photo.height) >= MIN_SIDE_PX
    assert photo.width > photo.height
    assert decoded(photo).size == (photo.width, photo.height)


def test_panorama_keeps_the_minimum_short_side_rather_than_the_long_side_cap() -> None:
    photo = prepare_photo(imagegen.jpeg_bytes(4000, 1100))
    assert photo.height == MIN_SIDE_PX
    assert photo.width == round(4000 * MIN_SIDE_PX / 1100)


def test_exif_orientation_is_applied_and_the_corner_moves() -> None:
    # Stored landscape 1400x1024, orientation 6 = rotate 90° clockwise to display:
    # the stored top-left corner is shown top-right.
    data = imagegen.jpeg_bytes(1400, 1024, orientation=6, marker=imagegen.RED)
    photo = prepare_photo(data)
    assert (photo.width, photo.height) == (1024, 1400)
    image = decoded(photo)
    inside = imagegen.MARKER_SIZE // 2
    assert is_red(image.getpixel((photo.width - inside, inside)))
    assert not is_red(image.getpixel((inside, inside)))
    assert not image.getexif(), "no EXIF (and so no orientation) may survive"


def test_gps_and_other_metadata_are_stripped() -> None:
    data = imagegen.jpeg_bytes(1200, 1100, gps=imagegen.GPS_AMSTERDAM)
    source = Image.open(io.BytesIO(data)).getexif()
    assert source.get_ifd(ExifTags.IFD.GPSInfo), "the test image must carry GPS to begin with"
    image = decoded(prepare_photo(data))
    assert not image.getexif()
    assert "exif" not in image.info
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)


def test_the_jpeg_is_encoded_into_a_file_descriptor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow releases the GIL only while it encodes into a real file (`fh`); into a BytesIO
    it holds it for the whole encode, and the bot's event loop stands still meanwhile."""
    descriptors: list[int | None] = []
    encode_tile = ImageFile._encode_tile

    def recording(im: Image.Image, fp: object, tile: object, bufsize: int, fh: int | None,
                  exc: BaseException | None = None) -> None:  # fmt: skip
        descriptors.append(fh)
        encode_tile(im, fp, tile, bufsize, fh, exc)  # type: ignore[arg-type]

    data = imagegen.png_bytes(1100, 1024, seed=5)  # a PNG is always encoded to JPEG
    monkeypatch.setattr(ImageFile, "_encode_tile", recording)
    photo = prepare_photo(data)
    assert descriptors and all(fh is not None for fh in descriptors)
    assert decoded(photo).size == (1100, 1024)


def test_a_jpeg_that_needs_no_change_keeps_its_image_data_and_loses_its_metadata() -> None:
    """Upright, RGB, no colour profile, already the stored size: the pixels are the ones sent
    (no second JPEG generation), and GPS, XMP, the comment and anything after the end go."""
    camera = imagegen.jpeg_bytes(1200, 1100, seed=8, gps=imagegen.GPS_AMSTERDAM)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>home address</x:xmpmeta>"
    app1_xmp = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    comment = b"\xff\xfe" + (len(b"owner: Jane") + 2).to_bytes(2, "big") + b"owner: Jane"
    sent = camera[:2] + app1_xmp + comment + camera[2:] + b"MOTION-PHOTO-VIDEO"
    photo = prepare_photo(sent)
    image = decoded(photo)
    assert image.tobytes() == Image.open(io.BytesIO(camera)).tobytes(), "the very pixels sent"
    assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
    for secret in (b"home address", b"owner: Jane", b"MOTION-PHOTO-VIDEO", b"GPS"):
        assert secret not in photo.data
    assert len(photo.data) < len(camera)


def test_a_jpeg_that_needs_turning_or_resizing_is_encoded_anew() -> None:
    for data, size in (
        (imagegen.jpeg_bytes(1100, 1024, seed=9, orientation=6), (1024, 1100)),
        (imagegen.jpeg_bytes(3000, 1500, seed=9), (MAX_SIDE_PX, MIN_SIDE_PX)),
    ):
        photo = prepare_photo(data)
        assert decoded(photo).size == size
        assert photo.data[: len(data) // 2] != data[: len(data) // 2]


def test_sha256_is_of_the_original_bytes() -> None:
    data = imagegen.jpeg_bytes(seed=3)
    assert prepare_photo(data).sha256 == hashlib.sha256(data).hexdigest()


def test_truncated_jpeg_is_corrupt() -> None:
    error = rejection(imagegen.truncated(imagegen.jpeg_bytes(1200, 1200, seed=5)))
    assert error.reason is RejectReason.CORRUPT
    assert "again" in error.message


def test_text_renamed_to_jpg_is_not_an_image() -> None:
    error = rejection(b"Dear diary, today I took no photos.\n" * 20, "holiday.jpg")
    assert error.reason is RejectReason.NOT_AN_IMAGE
    assert "JPEG" in error.message


def test_heic_gets_a_hint_to_send_jpeg() -> None:
    error = rejection(imagegen.heic_like_bytes(), "IMG_1234.HEIC")
    assert error.reason is RejectReason.NOT_AN_IMAGE
    assert "HEIC" in error.message
    assert "JPEG" in error.message


def test_png_header_claiming_ten_gigapixels_is_refused_without_decoding() -> None:
    bomb = imagegen.png_claiming_size(100_000, 100_000)
    started = time.perf_counter()
    error = rejection(bomb)
    assert time.perf_counter() - started < 1.0
    assert error.reason is RejectReason.TOO_MANY_PIXELS


BOMB_WARNING = "PIL.Image.DecompressionBombWarning"


@pytest.mark.parametrize(
    "side",  # 81 MP: under Pillow's warning threshold; 100 MP: over it (Pillow warns, we refuse)
    [9000, pytest.param(10000, marks=pytest.mark.filterwarnings(f"ignore::{BOMB_WARNING}"))],
)
def test_header_over_our_limit_but_under_pillows_error_is_refused_too(side: int) -> None:
    error = rejection(imagegen.png_claiming_size(side, side))
    assert error.reason is RejectReason.TOO_MANY_PIXELS


@pytest.mark.filterwarnings(f"error::{BOMB_WARNING}")
def test_pillows_bomb_warning_made_an_error_is_a_refusal_too() -> None:
    error = rejection(imagegen.png_claiming_size(10000, 10000))
    assert error.reason is RejectReason.TOO_MANY_PIXELS


def test_file_over_20_mb_is_refused_before_anything_else() -> None:
    error = rejection(b"\xff\xd8" + b"\x00" * MAX_FILE_BYTES)
    assert error.reason is RejectReason.FILE_TOO_LARGE
    assert "20 MB" in error.message


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("palette", imagegen.png_bytes(mode="P")),
        ("greyscale+alpha", imagegen.png_bytes(mode="LA")),
        ("cmyk jpeg", imagegen.jpeg_bytes(mode="CMYK")),
        ("16-bit grey", imagegen.png_bytes(mode="I;16")),
        ("webp", imagegen.encode(imagegen.make_image(), "WEBP")),
        ("animated gif", imagegen.animated_gif_bytes()),
    ],
)
def test_other_modes_and_formats_become_rgb_jpeg(label: str, data: bytes) -> None:
    image = decoded(prepare_photo(data))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1024, 1024)), label


def test_cmyk_keeps_its_colours() -> None:
    image = decoded(prepare_photo(imagegen.jpeg_bytes(mode="CMYK")))
    expected = imagegen.make_image().getpixel((512, 512))  # the green ellipse
    assert all(abs(a - b) < 12 for a, b in zip(image.getpixel((512, 512)), expected, strict=True))


def test_16_bit_is_scaled_not_clipped_to_white() -> None:
    grey = decoded(prepare_photo(imagegen.png_bytes(mode="I;16"))).getpixel((512, 512))
    expected = imagegen.make_image(mode="L").getpixel((512, 512))
    assert abs(grey[0] - expected) < 6


def test_transparency_is_composited_on_white() -> None:
    image = decoded(prepare_photo(imagegen.transparent_png_bytes()))
    assert min(image.getpixel((10, 10))) > 245  # transparent half: white, not black
    r, g, b = image.getpixel((1000, 10))
    assert b > 240 and r < 15 and g < 15  # opaque half unchanged


# --- batches ---------------------------------------------------------------------------------


def add(batch: IntakeBatch, data: bytes, filename: str | None = None) -> PreparedPhoto | None:
    """One photo as the service feeds it: the photo process's work, then the batch's rules."""
    return batch.take(prepare_and_measure(data, filename, "en"), filename)


def test_duplicates_within_the_batch_and_against_the_set_are_skipped() -> None:
    first, second = imagegen.jpeg_bytes(seed=1), imagegen.jpeg_bytes(seed=2)
    existing = prepare_photo(first).sha256
    batch = IntakeBatch({existing}, existing_count=1)
    assert add(batch, first) is None
    assert add(batch, second) is not None
    assert add(batch, second) is None
    assert [r.reason for r in batch.rejected] == [RejectReason.DUPLICATE] * 2
    assert batch.set_count == 2


def test_photos_over_the_cap_are_refused() -> None:
    batch = IntakeBatch([f"hash{i}" for i in range(MAX_PHOTOS - 1)])
    assert add(batch, imagegen.jpeg_bytes(seed=1)) is not None
    assert add(batch, imagegen.jpeg_bytes(seed=2)) is None
    assert batch.rejected[0].reason is RejectReason.OVER_CAP
    assert batch.set_count == MAX_PHOTOS
    assert "full" in batch.summary()


def test_duplicate_of_a_full_set_is_called_a_duplicate() -> None:
    data = imagegen.jpeg_bytes(seed=9)
    photo = prepare_photo(data)
    batch = IntakeBatch([photo.sha256], existing_count=MAX_PHOTOS)
    assert batch.add_prepared(photo) is None
    assert batch.rejected[0].reason is RejectReason.DUPLICATE


def test_album_of_twelve_is_summarised_in_one_message() -> None:
    album = [imagegen.jpeg_bytes(seed=i) for i in range(10)]
    album.insert(4, imagegen.jpeg_bytes(800, 800, seed=99))
    album.append(album[0])
    batch = IntakeBatch()
    for i, data in enumerate(album):
        add(batch, data, f"photo{i}.jpg")
    assert (batch.received, len(batch.accepted), batch.set_count) == (12, 10, 10)
    assert batch.summary() == (
        "12 photos received: 10 added (10 of 20 in your set), "
        "1 too small (send it as a file to keep full size), 1 duplicate skipped. "
        "Ready: /train <class> (e.g. /train man), or add up to 10 more."
    )


def test_summary_groups_rejections_and_says_how_many_more_are_needed() -> None:
    batch = IntakeBatch()
    add(batch, imagegen.jpeg_bytes(seed=1))
    for side in (500, 600, 700):
        add(batch, imagegen.jpeg_bytes(side, side))
    batch.reject(RejectReason.FILE_TOO_LARGE, "too big")
    summary = batch.summary()
    assert summary.startswith("5 photos received: 1 added (1 of 20 in your set), 3 too small")
    assert "send those as files" in summary
    assert "1 over 20 MB" in summary
    assert summary.endswith("Send 3 more (at least 4), then /train <class>.")


def test_a_single_refused_photo_gets_the_full_explanation() -> None:
    batch = IntakeBatch()
    add(batch, imagegen.jpeg_bytes(800, 600))
    summary = batch.summary()
    assert "800×600" in summary
    assert "Send 4 more" in summary


def test_add_prepared_lets_decoding_happen_elsewhere() -> None:
    photos = [prepare_photo(imagegen.jpeg_bytes(seed=i)) for i in range(4)]
    batch = IntakeBatch()
    assert [batch.add_prepared(p) for p in photos] == photos
    assert batch.summary().endswith("add up to 16 more.")


# --- ready to train --------------------------------------------------------------------------


def test_check_ready_to_train() -> None:
    check_ready_to_train(4)
    check_ready_to_train(MAX_PHOTOS)
    with pytest.raises(NotEnoughPhotos) as info:
        check_ready_to_train(1)
    assert info.value.missing == 3
    assert "at least 4" in info.value.message
    assert "Send 3 more" in info.value.message
