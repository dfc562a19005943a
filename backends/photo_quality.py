"""What can be told about a training photo without any model: sharpness, exposure, near-duplicates.

Used by our worker's `POST /images/inspect` and, with hosted Astria (whose inspect knows nothing
of the rest of the set), by the bot itself. numpy and Pillow only, so the bot needs no extra.

Every measure is taken at *training scale*: the photo is first brought down to
`ANALYSIS_SIDE` pixels on its short side (SDXL trains at 1024), so a 4000 px phone photo and a
1024 px one are judged alike, and blur that training would not see is not held against a photo.

- Sharpness: the variance of the Laplacian (the classic focus measure). On the face box when
  one is given; without one, on the second-sharpest of a 4x4 grid of tiles, so a portrait with
  a soft, out-of-focus background is not called blurry because its background is.
- Exposure: mean brightness and the shares of crushed black and blown white pixels, on the face
  when given (a backlit face is the usual failure), else on the whole photo.
- Perceptual hash: pHash (the low frequencies of a 32x32 DCT against their median), 64 bits;
  photos whose hashes differ in at most `NEAR_DUPLICATE_BITS` bits are near-duplicates (a burst
  of the same pose, the same photo re-sent re-encoded or slightly cropped).

Thresholds were set on scikit-image's packaged photographs and copies of them made blurry,
dark, bright, re-encoded and cropped (tests/test_photo_quality.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backends.findings import PERSON_CLASSES, Finding

ANALYSIS_SIDE = 1024
"""Short side (pixels) at which every measure is taken: SDXL's training resolution."""
BLURRY_BELOW_FACE = 25.0
"""Laplacian variance on the face box under which a face is blurry."""
BLURRY_BELOW_PHOTO = 40.0
"""Laplacian variance of the second-sharpest tile under which a photo without a face box is
blurry (tiles hold more edges than a face: hair, clothes, background)."""
TOO_DARK_BELOW = 0.22
"""Mean brightness (0..1) under which a face or photo is too dark."""
TOO_BRIGHT_ABOVE = 0.85
"""Mean brightness above which it is washed out."""
CLIPPED_SHARE = 0.25
"""Share of pure black or pure white pixels above which detail is lost (clipped)."""
NEAR_DUPLICATE_BITS = 10
"""Hamming distance (of 64 bits) up to which two photos count as near-duplicates."""
FACE_TOO_SMALL_BELOW = 0.12
"""Face height / photo height under which the face is too small to learn a likeness from
(a full-body or long shot)."""
MAX_STRETCH = 4.0
"""Largest contrast gain applied before measuring sharpness (more would turn noise into
"detail")."""
MAX_PIXELS = 40_000_000
"""Largest photo decoded (a 40 MP camera is fine; a decompression bomb is not)."""


class PhotoError(ValueError):
    """The bytes are not a photo we can analyse; the message says why, for the user."""


class Region(NamedTuple):
    """A box in pixels of the photo as given: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Exposure:
    """Brightness figures of a face or photo, all 0..1."""

    mean: float
    dark_share: float
    """Share of pixels at or below 4 % brightness (crushed shadows)."""
    bright_share: float
    """Share of pixels at or above 96 % brightness (blown highlights)."""

    @property
    def findings(self) -> frozenset[Finding]:
        found = set()
        if self.mean < TOO_DARK_BELOW:
            found.add(Finding.TOO_DARK)
        elif self.mean > TOO_BRIGHT_ABOVE:
            found.add(Finding.TOO_BRIGHT)
        if max(self.dark_share, self.bright_share) > CLIPPED_SHARE:
            found.add(Finding.CLIPPED)
        return frozenset(found)


@dataclass(frozen=True, order=True)
class PhotoHash:
    """A 64-bit perceptual hash; 16 hex digits on the wire."""

    value: int

    def __str__(self) -> str:
        return f"{self.value:016x}"

    @classmethod
    def parse(cls, text: str) -> PhotoHash:
        """From 16 hex digits; raises ValueError on anything else."""
        text = text.strip().lower()
        if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"{text[:40]!r} is not a 16-hex-digit photo hash")
        return cls(int(text, 16))

    def distance(self, other: PhotoHash) -> int:
        """Bits that differ (0 = same picture, ~32 = unrelated pictures)."""
        return (self.value ^ other.value).bit_count()


@dataclass(frozen=True)
class PhotoQuality:
    """The model-free verdict on one photo."""

    width: int
    height: int
    sharpness: float
    """Laplacian variance at training scale (face box, or second-sharpest tile)."""
    sharpness_on_face: bool
    exposure: Exposure
    phash: PhotoHash
    near_duplicate_of: int | None
    """Index into the `others` hashes it was compared with; None if it is not a near-duplicate."""

    @property
    def blurry(self) -> bool:
        limit = BLURRY_BELOW_FACE if self.sharpness_on_face else BLURRY_BELOW_PHOTO
        return self.sharpness < limit

    @property
    def findings(self) -> frozenset[Finding]:
        found = set(self.exposure.findings)
        if self.blurry:
            found.add(Finding.BLURRY)
        if self.near_duplicate_of is not None:
            found.add(Finding.NEAR_DUPLICATE)
        return frozenset(found)


def open_photo(content: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `content` into an upright RGB image (EXIF rotation applied: a phone's portrait
    photo is stored sideways, and a sideways face is no face to a detector).

    Raises PhotoError for anything that is not a readable image, or is larger than
    `max_pixels` (checked from the header, before the pixels are decoded)."""
    try:
        with Image.open(io.BytesIO(content)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise PhotoError(
                    f"the photo is {width}x{height} pixels; at most"
                    f" {max_pixels // 1_000_000} megapixels are accepted"
                )
            probe.load()
            image = ImageOps.exif_transpose(probe).convert("RGB")
    except PhotoError:
        raise
    except Image.DecompressionBombError:
        raise PhotoError(
            f"the photo has too many pixels; at most {max_pixels // 1_000_000} megapixels"
            " are accepted"
        ) from None
    except UnidentifiedImageError:
        raise PhotoError("the file is not an image we can read (send a JPEG or PNG)") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise PhotoError("the image is damaged or cut short; please send it again") from None
    return image


def training_scale(image: Image.Image) -> tuple[Image.Image, float]:
    """`image` brought down to ANALYSIS_SIDE on its short side (never up), and the factor."""
    factor = min(1.0, ANALYSIS_SIDE / min(image.size))
    if factor == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.LANCZOS, reducing_gap=3.0), factor


class _Analysis(NamedTuple):
    """The gray pixels at training scale (8 bits, as decoded) and the scale factor: made once
    per photo for sharpness, exposure and the hash (at 1024 px it is most of what they cost)."""

    gray: np.ndarray
    factor: float

    @classmethod
    def of(cls, image: Image.Image) -> _Analysis:
        scaled, factor = training_scale(image)
        return cls(np.asarray(scaled.convert("L")), factor)

    def region(self, face: Region | None) -> np.ndarray:
        if face is None:
            return self.gray
        x0, y0, x1, y1 = _scaled_box(face, self.factor, self.gray.shape)
        return self.gray[y0:y1, x0:x1]

    def phash(self) -> PhotoHash:
        """pHash: the 8x8 lowest frequencies of the 32x32 DCT of the gray pixels, each bit set
        when above their median. Box-averaged to ~64 px before the Lanczos (`reducing_gap`): a
        Lanczos from 1024 px straight to 32 spans 100 source pixels per output pixel."""
        small = Image.fromarray(self.gray).resize((32, 32), Image.LANCZOS, reducing_gap=2.0)
        low = (_DCT @ np.asarray(small, dtype=np.float64) @ _DCT.T)[:8, :8]
        bits = (low > np.median(low)).flatten()
        return PhotoHash(int("".join("1" if b else "0" for b in bits), 2))


def sharpness(image: Image.Image, face: Region | None = None) -> float:
    """Variance of the Laplacian at training scale: on `face`, else on the second-sharpest
    tile of a 4x4 grid. Higher is sharper; see BLURRY_BELOW_FACE / BLURRY_BELOW_PHOTO."""
    return _sharpness(_Analysis.of(image), face)


def _sharpness(analysis: _Analysis, face: Region | None) -> float:
    gray = analysis.region(face)
    laplacian = _laplacian(gray)  # once for the photo: a tile's is the slice of its interior
    if face is not None:
        return _laplacian_variance(gray, laplacian)
    rows = np.array_split(np.arange(gray.shape[0]), 4)
    cols = np.array_split(np.arange(gray.shape[1]), 4)
    tiles = sorted(
        _laplacian_variance(
            gray[r[0] : r[-1] + 1, c[0] : c[-1] + 1], laplacian[r[0] : r[-1] - 1, c[0] : c[-1] - 1]
        )
        for r in rows
        for c in cols
    )
    return tiles[-2]


def exposure(image: Image.Image, face: Region | None = None) -> Exposure:
    """Brightness of `face` (or of the whole photo) at training scale."""
    return _exposure(_Analysis.of(image), face)


DARK_AT_MOST = 10
"""8-bit levels at or below 4 % brightness (10/255 = 3.9 %, 11/255 = 4.3 %)."""
BRIGHT_AT_LEAST = 245
"""8-bit levels at or above 96 % brightness (245/255 = 96.1 %, 244/255 = 95.7 %)."""


def _exposure(analysis: _Analysis, face: Region | None) -> Exposure:
    levels = analysis.region(face)  # counted on the 8-bit levels: no float copy of the photo
    return Exposure(
        mean=float(levels.mean(dtype=np.float64) / 255.0),
        dark_share=float(np.count_nonzero(levels <= DARK_AT_MOST) / levels.size),
        bright_share=float(np.count_nonzero(levels >= BRIGHT_AT_LEAST) / levels.size),
    )


def perceptual_hash(image: Image.Image) -> PhotoHash:
    """The photo's pHash at training scale, as `assess` takes it. Survives re-encoding,
    resizing, small crops and colour changes."""
    return _Analysis.of(image).phash()


def find_near_duplicate(
    photo: PhotoHash, others: Sequence[PhotoHash], max_bits: int = NEAR_DUPLICATE_BITS
) -> int | None:
    """Index of the closest of `others` within `max_bits`, or None."""
    best: tuple[int, int] | None = None
    for index, other in enumerate(others):
        bits = photo.distance(other)
        if bits <= max_bits and (best is None or bits < best[0]):
            best = (bits, index)
    return None if best is None else best[1]


def near_duplicate_groups(
    hashes: Sequence[PhotoHash], max_bits: int = NEAR_DUPLICATE_BITS
) -> list[list[int]]:
    """Indices of the set grouped by near-duplicate links (single linkage); groups of one
    are left out. `len(hashes) - sum(len(g) - 1 for g in groups)` is the number of distinct
    photos: what `/train` warns about when it is low."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hashes[i].distance(hashes[j]) <= max_bits:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def face_findings(
    faces: Iterable[Region], size: tuple[int, int], *, class_name: str
) -> frozenset[Finding]:
    """What the detected faces say about a photo of `class_name`: a person class needs exactly
    one face, large enough; other classes (pets, styles) are not judged by human faces."""
    if class_name.strip().lower() not in PERSON_CLASSES:
        return frozenset()
    boxes = list(faces)
    if not boxes:
        return frozenset({Finding.NO_FACE})
    found = set()
    if len(boxes) > 1:
        found.add(Finding.MULTIPLE_FACES)
    if face_fraction(max(boxes, key=lambda b: b.w * b.h), size) < FACE_TOO_SMALL_BELOW:
        found.add(Finding.FACE_TOO_SMALL)
    return frozenset(found)


def face_fraction(face: Region, size: tuple[int, int]) -> float:
    """Face height relative to the photo's height (portrait ~0.3-0.6, long shot < 0.12)."""
    return face.h / max(1, size[1])


def assess(
    image: Image.Image, face: Region | None = None, others: Sequence[PhotoHash] = ()
) -> PhotoQuality:
    """All model-free measures of one photo; `others` are the hashes of the rest of the set."""
    analysis = _Analysis.of(image)
    phash = analysis.phash()
    return PhotoQuality(
        width=image.width,
        height=image.height,
        sharpness=_sharpness(analysis, face),
        sharpness_on_face=face is not None,
        exposure=_exposure(analysis, face),
        phash=phash,
        near_duplicate_of=find_near_duplicate(phash, others),
    )


def _scaled_box(face: Region, factor: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """`face` in the scaled image, clipped to it and at least 3x3 pixels (the Laplacian's)."""
    height, width = shape[:2]
    x0 = min(max(0, round(face.x * factor)), width - 3)
    y0 = min(max(0, round(face.y * factor)), height - 3)
    x1 = max(x0 + 3, min(width, round((face.x + face.w) * factor)))
    y1 = max(y0 + 3, min(height, round((face.y + face.h) * factor)))
    return x0, y0, x1, y1


def _laplacian(gray: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian (OpenCV's `Laplacian(ksize=1)`) of 8-bit levels over the valid
    pixels, exact in 16 bits; summed in place, without a temporary per term."""
    levels = gray.astype(np.int16)
    laplacian = levels[:-2, 1:-1] + levels[2:, 1:-1]
    laplacian += levels[1:-1, :-2]
    laplacian += levels[1:-1, 2:]
    laplacian -= 4 * levels[1:-1, 1:-1]
    return laplacian


def _laplacian_variance(gray: np.ndarray, laplacian: np.ndarray) -> float:
    """Variance of `laplacian` (of `gray`, see `_laplacian`), after stretching the region's
    1st..99th percentile to full range (gain at most MAX_STRETCH): a dark but sharp photo is
    dark, not blurry. Computed from exact integer sums: no float64 copy of the pixels."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    low, high = _level_percentiles(gray, (0.01, 0.99))
    gain = min(MAX_STRETCH, 255.0 / max(float(high - low), 1.0))
    count = laplacian.size
    total = int(laplacian.sum(dtype=np.int64))
    squares = int(np.einsum("ij,ij->", laplacian, laplacian, dtype=np.int64))
    return (squares - total * total / count) / count * gain**2


def _level_percentiles(levels: np.ndarray, quantiles: tuple[float, ...]) -> list[float]:
    """`np.percentile(levels, 100 * q)` for 8-bit levels (uint8), from their histogram instead of a
    sort: the same linear interpolation between the two nearest ranks, in a tenth of the time
    (16 tiles a photo, a photo per upload)."""
    # Pillow's histogram counts 8-bit levels ~2.5x faster than np.bincount, which first
    # widens every level to 64 bits.
    ranks = np.cumsum(Image.fromarray(levels).histogram())  # values <= each level
    last = int(ranks[-1]) - 1
    found = []
    for quantile in quantiles:
        index = quantile * last
        below = int(np.floor(index))
        low, high = (
            float(np.searchsorted(ranks, rank, side="right"))
            for rank in (below, min(below + 1, last))
        )
        weight = index - below  # numpy's lerp, computed from the nearer end
        found.append(
            high - (high - low) * (1 - weight) if weight >= 0.5 else low + (high - low) * weight
        )
    return found


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: `M @ x` is the DCT of column vector x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.sqrt(2 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(32)
