"""Training data for a tune: photos -> square crops -> cached VAE latents, plus captions.

- Photos are EXIF-rotated (phones store portraits sideways) and must be at least
  MIN_PHOTO_SIDE px on the short side: SDXL learns at 1024, and an upscaled small photo teaches
  it blur. POST /tunes refuses such photos already; the trainer checks again for rows accepted
  before that check existed.
- Crops are square and face-centred when the Haar detector finds a face (Astria's `face_crop`
  idea: the face is what must be learnt), else centred. With `face_crop` explicitly on, each photo
  with a face also yields a close-up crop, so a set of half-body shots still teaches the face.
- Every crop is also flipped. The VAE runs once per crop and flip and the latents are cached:
  encoding at every step would cost about as much as the UNet step itself at 1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from backends.local.errors import PhotoError
from backends.local.faces import Box, detect_faces
from backends.local.params import MIN_PHOTO_SIDE, too_small_message

DETECT_SIDE = 1024
"""Faces are searched on a copy this large: Haar cost grows with pixels, faces are big anyway."""
CLOSE_UP_CONTEXT = 2.5
"""A close-up crop is this many face boxes wide (face, hair, a bit of neck)."""

CAPTION_TEMPLATES = (
    "a photo of {token} {cls}",
    "a portrait photo of {token} {cls}",
    "a close-up photo of {token} {cls}",
    "{token} {cls}",
    "a photo of {token} {cls}, natural light",
    "a high quality photo of {token} {cls}",
)
"""Varied wording, so the token (not one sentence) carries the identity; `{token}` is the user's
token as typed in prompts (generation expands it to the n embedding rows, so does training)."""


def load_photo(path: Path) -> Image.Image:
    """The photo upright (EXIF orientation applied) in RGB; refuses small or unreadable ones."""
    try:
        with Image.open(path) as raw:
            image = ImageOps.exif_transpose(raw).convert("RGB")
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise PhotoError(f"{path.name} is not a readable image: {exc}") from exc
    if min(image.size) < MIN_PHOTO_SIDE:
        raise PhotoError(too_small_message(path.name, *image.size))
    return image


def find_face(image: Image.Image) -> Box | None:
    """The largest face, in `image` pixels, found on a downscaled copy."""
    scale = min(1.0, DETECT_SIDE / max(image.size))
    small = (
        image
        if scale == 1.0
        else image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    )
    boxes = detect_faces(small)
    if not boxes:
        return None
    b = boxes[0]
    return Box(round(b.x / scale), round(b.y / scale), round(b.w / scale), round(b.h / scale))


def square_around(size: tuple[int, int], side: int, centre: tuple[int, int]) -> tuple[int, ...]:
    """A `side` square centred on `centre` as far as the image allows (shifted inside it)."""
    width, height = size
    side = min(side, width, height)
    left = min(max(0, centre[0] - side // 2), width - side)
    top = min(max(0, centre[1] - side // 2), height - side)
    return left, top, left + side, top + side


def regions(image: Image.Image, size: int, face_crop: bool | None) -> list[tuple[int, ...]]:
    """Where the training crops of one photo lie: face-centred (or centred), maybe a close-up."""
    width, height = image.size
    short = min(width, height)
    face = find_face(image) if face_crop is not False else None
    centre = (width // 2, height // 2)
    if face is not None:
        centre = (face.x + face.w // 2, face.y + face.h // 2)
    out = [square_around(image.size, short, centre)]
    if face is not None and face_crop:
        side = max(int(max(face.w, face.h) * CLOSE_UP_CONTEXT), size * 3 // 4)
        if side <= short * 0.8:  # only when it is really closer than the main crop
            out.append(square_around(image.size, side, centre))
    return out


def crops(image: Image.Image, size: int, face_crop: bool | None) -> list[Image.Image]:
    """The training crops of one photo, resized to `size` px."""
    return [
        image.crop(r).resize((size, size), Image.LANCZOS) for r in regions(image, size, face_crop)
    ]


@dataclass
class LatentCache:
    """VAE latents of every crop and its mirror image, already scaled for the UNet.

    The posterior mean is kept, not a sample: SDXL's VAE posterior std is negligible next to
    its latents, and a fixed target makes the run reproducible.
    """

    latents: Any  # torch.Tensor [N, 4, h, w], fp32, on the training device

    def __len__(self) -> int:
        return int(self.latents.shape[0])


def encode_latents(vae: Any, images: list[Image.Image], device: str) -> LatentCache:
    """Run the VAE once per image and per mirror image."""
    import numpy as np
    import torch

    out = []
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    dtype = next(vae.parameters()).dtype
    with torch.no_grad():
        for image in images:
            for variant in (image, ImageOps.mirror(image)):
                array = np.asarray(variant, dtype=np.float32) / 127.5 - 1.0
                pixels = torch.from_numpy(array).permute(2, 0, 1)[None]
                dist = vae.encode(pixels.to(device=device, dtype=dtype)).latent_dist
                out.append(((dist.mean.float() - shift) * scale)[0])
    return LatentCache(torch.stack(out))


def prepare(paths: list[Path], size: int, face_crop: bool | None) -> list[Image.Image]:
    """Every usable crop of every photo; raises PhotoError naming the first bad photo."""
    if not paths:
        raise PhotoError("the tune has no photos")
    out: list[Image.Image] = []
    for index, path in enumerate(paths, 1):
        try:
            out += crops(load_photo(path), size, face_crop)
        except PhotoError as exc:
            raise PhotoError(f"photo {index}: {exc}") from None
    return out
