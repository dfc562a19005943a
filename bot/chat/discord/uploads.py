"""Result files made to fit Discord: at most 10 per message, each within the upload limit.

The limit depends on where the files go (an interaction reports its own, a guild's grows
with boosts, DMs get the default 10 MiB). Backends return PNGs, which are often bigger than
that at SDXL sizes, so a too-big image is re-encoded as JPEG (quality first, then size)
rather than dropped: the chat copy is for looking at; the original stays under DATA_DIR.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MAX_FILES_PER_MESSAGE = 10
DEFAULT_LIMIT_BYTES = 10 * 1024 * 1024
MAX_REQUEST_BYTES = 25 * 1024 * 1024
"""Discord refuses a request whose files add up to more than this, whatever each one weighs."""
JPEG_QUALITIES = (92, 85, 75, 60)
SHRINK_FACTOR = 0.75
MIN_SIDE_PX = 64


@dataclass(frozen=True)
class Upload:
    """One file ready to send: its chat name, its bytes, and the image number it shows."""

    number: int
    filename: str
    data: bytes


def fit(number: int, path: Path, limit: int) -> Upload:
    """The file as it is when it fits; otherwise a JPEG that does (smaller if it must be)."""
    data = path.read_bytes()
    if len(data) <= limit:
        return Upload(number, f"{number}{path.suffix}", data)
    return Upload(number, f"{number}.jpg", _jpeg_within(data, limit))


def _jpeg_within(data: bytes, limit: int) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    while True:
        for quality in JPEG_QUALITIES:
            encoded = _encode_jpeg(image, quality)
            if len(encoded) <= limit:
                return encoded
        width, height = image.size
        if min(width, height) * SHRINK_FACTOR < MIN_SIDE_PX:
            return encoded  # nothing sensible fits; Discord will say so
        size = (round(width * SHRINK_FACTOR), round(height * SHRINK_FACTOR))
        image = image.resize(size, Image.Resampling.LANCZOS)


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def fit_all(paths: Sequence[Path], limit: int) -> list[Upload]:
    """Every result file, numbered from 1 in the order the backend returned them."""
    return [fit(number, path, limit) for number, path in enumerate(paths, start=1)]


def batches(uploads: Sequence[Upload]) -> Iterator[list[Upload]]:
    """Split into messages of at most 10 files and MAX_REQUEST_BYTES each."""
    batch: list[Upload] = []
    for upload in uploads:
        total = sum(len(item.data) for item in batch) + len(upload.data)
        if batch and (len(batch) == MAX_FILES_PER_MESSAGE or total > MAX_REQUEST_BYTES):
            yield batch
            batch = []
        batch.append(upload)
    if batch:
        yield batch
