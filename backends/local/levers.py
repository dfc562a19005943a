"""Applying the speed levers of `accel.Accel` to a pipeline, once, when a base model loads.

Kept apart from accel.py (the switches and why each one exists), which the configuration reads
at start without loading torch; these functions are what models.py calls at load time.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from backends.local.accel import Accel

log = logging.getLogger(__name__)


def place(pipe: Any, device: str, dtype: Any, accel: Accel) -> None:
    """Move the pipeline to `device`, or set up CPU offload in low-memory mode."""
    if accel.low_memory == "off" or not device.startswith("cuda"):
        pipe.to(device=device, dtype=dtype)
    else:
        pipe.to(dtype=dtype)
        if accel.low_memory == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.enable_model_cpu_offload(device=device)
    if accel.low_memory != "off":
        enable_vae_memory_savers(pipe.vae)


def enable_vae_memory_savers(vae: Any) -> None:
    """Decode a batch one image at a time, and large images in tiles (bounded VAE memory)."""
    vae.enable_slicing()
    vae.enable_tiling()


def apply_static(pipe: Any, dtype: Any, accel: Accel) -> None:
    """The levers that change modules in place (before any LoRA slot or compile)."""
    import torch

    if accel.bf16_vae == "on" and dtype == torch.bfloat16:
        pipe.vae.register_to_config(force_upcast=False)
    elif accel.bf16_vae == "off" and dtype != torch.float32:
        pipe.vae.register_to_config(force_upcast=True)
    if accel.fuse_qkv == "on":
        pipe.unet.fuse_qkv_projections()
    if accel.channels_last == "on":
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)


def set_compile_cache(cache_dir: Path | None) -> None:
    """Point Inductor's (and Triton's) caches at a folder that survives restarts."""
    if cache_dir is None:
        return
    import torch

    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir / "triton"))
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def compile_unet(pipe: Any, accel: Accel) -> None:
    """Compile the UNet in place (the module keeps its identity, so PEFT and the pipelines
    still see the same object). Static shapes: each warm-up shape gets its own kernels."""
    set_compile_cache(accel.compile_cache_dir)
    pipe.unet.compile(mode=accel.compile, fullgraph=True, dynamic=False)


def uncompile_unet(pipe: Any) -> None:
    """Drop a compiled forward (warm-up failed): back to eager, never a broken worker."""
    unet = pipe.unet
    if getattr(unet, "_compiled_call_impl", None) is not None:
        unet._compiled_call_impl = None


def warm_up(pipe: Any, shapes: list[tuple[int, int, int]], device: str) -> float:
    """Run two denoising steps per shape so compilation happens here, at load; seconds taken."""
    import torch

    start = time.perf_counter()
    for w, h, batch in shapes:
        t0 = time.perf_counter()
        pipe(
            prompt=["warm-up"] * batch,
            negative_prompt=[""] * batch,
            width=w,
            height=h,
            num_inference_steps=2,
            guidance_scale=5.0,
            generator=[torch.Generator(device).manual_seed(i) for i in range(batch)],
            output_type="latent",
        )
        log.info("warm-up %dx%d x%d: %.1fs", w, h, batch, time.perf_counter() - t0)
    return time.perf_counter() - start
