"""`super_resolution`: make the image larger and keep it sharp, with the base model itself.

Default ("hires fix", no extra weights): Lanczos to the target size, then a low-strength SDXL
img2img pass with the same prompt, LoRA and seed, which re-draws fine detail at the new size
while keeping composition and identity (strength 0.3; `hires_fix` asks for more detail: 0.45).
The VAE is tiled above 1.5x the native size, where a whole-image decode would not fit.

Optional: an ESRGAN-family model (`.pth`/`.safetensors`, e.g. 4x-UltraSharp) named by the
operator, loaded with `spandrel` if installed, upscales first instead of Lanczos; its output is
resized to the target and still goes through the img2img pass to regain SDXL texture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

STRENGTH = 0.3
DETAIL_STRENGTH = 0.45


def target_size(w: int, h: int, scale: float) -> tuple[int, int]:
    """The super-resolved size, rounded to a multiple of 8 (VAE/UNet friendly)."""
    return int(round(w * scale / 8) * 8), int(round(h * scale / 8) * 8)


class SpandrelUpscaler:
    """A user-supplied super-resolution network (ESRGAN family) run through spandrel."""

    def __init__(self, path: str, device: str) -> None:
        try:
            import spandrel
        except ImportError as exc:
            raise RuntimeError("WORKER_UPSCALER_MODEL needs `pip install spandrel`") from exc
        model = spandrel.ModelLoader().load_from_file(path)
        if not isinstance(model, spandrel.ImageModelDescriptor):
            raise RuntimeError(f"{path} is not a single-image super-resolution model")
        self.model = model.to(device).eval()
        self.device = device
        self.scale = int(model.scale)

    def __call__(self, image: Image.Image) -> Image.Image:
        import numpy as np
        import torch

        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device)
        with torch.inference_mode():
            out = self.model(tensor).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return Image.fromarray((out * 255.0 + 0.5).astype(np.uint8))


def pre_upscale(
    images: list[Image.Image], size: tuple[int, int], upscaler: Callable | None = None
) -> list[Image.Image]:
    """Resize to `size`: through the model first when one is configured, else Lanczos alone."""
    out = []
    for image in images:
        if upscaler is not None:
            image = upscaler(image)
        out.append(image.resize(size, Image.LANCZOS))
    return out


def hires_fix(
    img2img: Any,
    images: list[Image.Image],
    *,
    size: tuple[int, int],
    strength: float,
    steps: int,
    call_kwargs: dict[str, Any],
    native_size: int,
    upscaler: Callable | None = None,
) -> list[Image.Image]:
    """Upscale `images` to `size` and re-draw them at `strength` in one img2img batch."""
    big = pre_upscale(images, size, upscaler)
    vae = img2img.vae
    tile = max(size) > native_size * 1.5
    if tile:
        vae.enable_tiling()
    try:
        result = img2img(
            image=big,
            strength=strength,
            num_inference_steps=max(steps, round(2 / strength)),
            width=size[0],
            height=size[1],
            **call_kwargs,
        )
    finally:
        if tile:
            vae.disable_tiling()
    return list(result.images)
