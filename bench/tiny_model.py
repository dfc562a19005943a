"""Tiny-model benchmark: `SDXL_MODEL=tiny` before and after issue 13, in one run on the CPU.

Before (`OLD_TINY`, kept only here as the baseline): diffusers' tiny SDXL test configs, a VAE
that halves the size once and a two-level UNet, so a 512 px image runs the UNet on 256x256
latents with attention over 128x128 tokens. After (`models.TINY_ARCHITECTURE`): SDXL's
geometry at tiny widths, a VAE that divides by 8 and three UNet levels.

Each row is one 30-step image (euler_a, CFG 5, one prompt: the pipeline call generate.py
makes) at a size, after a small warm-up call. The new model is timed end to end. The old one
is far too slow for that (issue 13 saw a 512 px prompt not finish in 13 minutes), so its image
is timed by stage in the same run: the prompt encoding, `--old-steps` denoising steps (the
pipeline itself, run for that many steps) and the VAE decode, each measured; the 30-step
figure is encoding + 30 x the measured step + decode. The new model's images are estimated
the same way beside their measured time, which checks the method.

Prints wall and CPU seconds (CPU: this process, every thread) per row, the old/new ratio per
size, the load average (a shared machine stretches wall time) and the target of issue 13:
a 30-step 1024 px image <= 20 s on 2 cores.
Usage: python bench/tiny_model.py [--sizes 512,1024] [--old-sizes 512,1024] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # backends, run as a script

from backends.local.models import (
    BYTE_VOCAB_SIZE,
    CLIP_COMMON,
    TINY_ARCHITECTURE,
    Architecture,
    build_tiny_pipeline,
)

OLD_TEXT = {
    **CLIP_COMMON,
    "vocab_size": BYTE_VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "hidden_act": "gelu",
    "projection_dim": 32,
}
OLD_TINY = Architecture(
    unet={
        "block_out_channels": (32, 64),
        "layers_per_block": 2,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4),
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "transformer_layers_per_block": (1, 2),
        "projection_class_embeddings_input_dim": 80,
        "cross_attention_dim": 64,
        "norm_num_groups": 32,
    },
    vae={
        "block_out_channels": (32, 64),
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "latent_channels": 4,
        "sample_size": 128,
    },
    text_encoder=OLD_TEXT,
    text_encoder_2=OLD_TEXT,
)
"""The tiny model as it was before issue 13 (VAE /2, two UNet levels): the baseline."""

PROMPT = "astronaut"
CFG = 5.0
TARGET_1024_S = 20.0


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu)

    def __mul__(self, factor: float) -> Timing:
        return Timing(self.wall * factor, self.cpu * factor)

    def __str__(self) -> str:
        return f"{self.wall:8.1f} s wall {self.cpu:8.1f} s CPU"


def timed(work: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def image_call(pipe: Any, size: int, steps: int, **extra: Any) -> Any:
    import torch

    with torch.inference_mode():
        return pipe(
            prompt=PROMPT,
            negative_prompt="",
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=CFG,
            generator=torch.Generator().manual_seed(0),
            **extra,
        )


def measured(pipe: Any, size: int, steps: int) -> Timing:
    """One whole image, as the worker makes it."""
    timing, _ = timed(lambda: image_call(pipe, size, steps))
    return timing


def estimated(pipe: Any, size: int, steps: int, timed_steps: int) -> Timing:
    """encoding + `steps` x (one measured denoising step) + decode, each stage timed once."""
    import torch

    def encode() -> Any:
        with torch.inference_mode():
            return pipe.encode_prompt(PROMPT, device="cpu", negative_prompt="")

    encoding, _ = timed(encode)
    partial, out = timed(lambda: image_call(pipe, size, timed_steps, output_type="latent"))
    latents = out.images

    def decode() -> Any:
        with torch.inference_mode():
            image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
            return pipe.image_processor.postprocess(image)

    decoding, _ = timed(decode)
    step = Timing(partial.wall - encoding.wall, partial.cpu - encoding.cpu) * (1 / timed_steps)
    return encoding + step * steps + decoding


def build(architecture: Architecture) -> Any:
    pipe = build_tiny_pipeline(architecture)
    pipe.set_progress_bar_config(disable=True)
    image_call(pipe, 64, 1)  # warm-up: lazy initialisation is not the image's cost
    return pipe


def main(argv: list[str] | None = None) -> dict[str, dict[int, Timing]]:
    """Run the rows; returns {"new": {size: measured}, "new_estimated": ..., "old": ...}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,1024", help="sides in px of the new model's rows")
    parser.add_argument("--old-sizes", default="512,1024", help="the old model's (slow: minutes)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--old-steps", type=int, default=1, help="steps timed on the old model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs")
    print(f"load average before: {_load()}")
    results: dict[str, dict[int, Timing]] = {"new": {}, "new_estimated": {}, "old": {}}
    new, check, old = results["new"], results["new_estimated"], results["old"]
    pipe = build(TINY_ARCHITECTURE)
    for size in _sizes(args.sizes):
        new[size] = measured(pipe, size, steps)
        print(f"new {size:5d} px {steps} steps, measured   {new[size]}", flush=True)
        check[size] = estimated(pipe, size, steps, args.old_steps)
        print(f"new {size:5d} px {steps} steps, estimated  {check[size]}  (method check)")
    pipe = build(OLD_TINY)
    for size in _sizes(args.old_sizes):
        old[size] = estimated(pipe, size, steps, args.old_steps)
        print(f"old {size:5d} px {steps} steps, estimated  {old[size]}", flush=True)
        if size in new:
            wall, cpu = old[size].wall / new[size].wall, old[size].cpu / new[size].cpu
            print(f"    {size} px: old/new {wall:.0f}x wall, {cpu:.0f}x CPU", flush=True)
    print(f"load average after: {_load()}")
    if 1024 in new:
        verdict = "met" if new[1024].wall <= TARGET_1024_S else "missed"
        print(f"target: a {steps}-step 1024 px image <= {TARGET_1024_S:.0f} s: {verdict}")
    return results


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
