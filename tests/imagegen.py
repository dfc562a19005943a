"""Build real image files in memory for tests: JPEG/PNG bytes of a given size, with EXIF.

Tests of photo intake need images that real decoders accept or refuse for real reasons, so
every helper here goes through Pillow (or, for the hostile cases, writes the bytes by hand).
Images differ by `seed`, so two calls with different seeds never hash alike.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import ExifTags, Image, ImageDraw

RGB = tuple[int, int, int]

RED: RGB = (255, 0, 0)
MARKER_SIZE = 64
"""Side of the square `marker` block: big enough to survive JPEG compression and resizing."""

GPS_AMSTERDAM: Mapping[int, Any] = {
    ExifTags.GPS.GPSLatitudeRef: "N",
    ExifTags.GPS.GPSLatitude: (52.0, 22.0, 7.5),
    ExifTags.GPS.GPSLongitudeRef: "E",
    ExifTags.GPS.GPSLongitude: (4.0, 53.0, 41.0),
}
"""A GPS IFD to put in EXIF, so tests can check that intake strips location data."""


def make_image(
    width: int = 1024,
    height: int = 1024,
    *,
    seed: int = 0,
    mode: str = "RGB",
    marker: RGB | None = None,
) -> Image.Image:
    """A deterministic picture whose content depends on `seed`.

    `marker` paints a MARKER_SIZE square of that colour in the top-left corner, so a test can
    see where the corner ended up after EXIF rotation. The background never contains pure red.
    """
    background = (40 + seed * 37 % 160, 90 + seed * 53 % 120, 200 - seed * 29 % 150)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    inset_x, inset_y = width // 4 + seed % 17, height // 4 + seed % 13
    draw.ellipse((inset_x, inset_y, width - inset_x, height - inset_y), fill=(20, 200, 120))
    draw.rectangle((0, height - height // 8, width // 2, height), fill=(230, 230, 60))
    if marker is not None:
        draw.rectangle((0, 0, MARKER_SIZE - 1, MARKER_SIZE - 1), fill=marker)
    if mode == "P":  # an adaptive palette, as an editor would save it (not dithered noise)
        return image.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "I;16":  # full 16-bit range, as a scanner or raw converter writes it
        return image.convert("I").point(lambda v: v * 257).convert("I;16")
    return image if mode == "RGB" else image.convert(mode)


def exif_bytes(*, orientation: int | None = None, gps: Mapping[int, Any] | None = None) -> bytes:
    """Raw EXIF (as Pillow's `exif=` save option takes it) with an orientation and/or GPS IFD."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps is not None:
        exif[ExifTags.IFD.GPSInfo] = dict(gps)
    return exif.tobytes()


def encode(image: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    """Save `image` in `fmt` (any Pillow format name) and return the file's bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_bytes(
    width: int = 1024,
    height: int = 1024,
    *,
    seed: int = 0,
    mode: str = "RGB",
    quality: int = 90,
    orientation: int | None = None,
    gps: Mapping[int, Any] | None = None,
    marker: RGB | None = None,
) -> bytes:
    """A JPEG file as a camera would write it: stored `width`×`height`, with optional EXIF."""
    image = make_image(width, height, seed=seed, mode=mode, marker=marker)
    params: dict[str, Any] = {"quality": quality}
    if orientation is not None or gps is not None:
        params["exif"] = exif_bytes(orientation=orientation, gps=gps)
    return encode(image, "JPEG", **params)


def png_bytes(
    width: int = 1024, height: int = 1024, *, seed: int = 0, mode: str = "RGB", **params: Any
) -> bytes:
    """A PNG file in `mode` (RGB, RGBA, P, LA, L, I;16 ...); extra `params` go to Pillow."""
    return encode(make_image(width, height, seed=seed, mode=mode), "PNG", **params)


def transparent_png_bytes(width: int = 1024, height: int = 1024) -> bytes:
    """An RGBA PNG: fully transparent black on the left half, opaque blue on the right half."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((width // 2, 0, width, height), fill=(0, 0, 255, 255))
    return encode(image, "PNG")


def animated_gif_bytes(width: int = 1024, height: int = 1024, frames: int = 3) -> bytes:
    """An animated GIF with `frames` differently coloured frames (intake keeps the first)."""
    images = [make_image(width, height, seed=i, mode="P") for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` fraction of a file, as an interrupted upload leaves it."""
    return data[: max(1, int(len(data) * keep))]


def png_claiming_size(width: int, height: int) -> bytes:
    """A hand-built PNG whose header claims `width`×`height` but whose pixel data is a few bytes.

    A decompression bomb in miniature: anything that trusts the header and allocates (or
    decodes) before checking the size will hang or run out of memory on it.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    pixels = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def heic_like_bytes() -> bytes:
    """The opening of an iPhone HEIC file (an ISO-BMFF `ftyp` box, brand `heic`).

    Pillow can't read HEIC, so intake must refuse it with a hint to send JPEG.
    """
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + b"\x00" * 64
