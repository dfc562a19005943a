"""Generation speed levers: the switches, and why each one exists (levers.py applies them once,
when a base model loads).

Why each one (numbers come from `bench/gpu.py` on a GPU; none were measured in this version):
- torch.compile of the UNet (`compile`): the UNet is ~95 % of a 30-step image. Compiled once,
  at load, with a warm-up over the usual shapes, never per request; the Inductor/Triton caches
  live on disk (`compile_cache_dir`) so a restart re-uses them. `off` is the quick start.
- channels_last UNet/VAE: cuDNN's convolutions run NHWC natively on tensor cores.
- fused QKV: one matmul instead of three per self-attention (two for cross-attention). The
  tune's LoRA is rewritten onto the fused projections by `lora_slot`, so fusing never drops it;
  without the hot-swap slot there is no such rewrite, so fusing is skipped.
- bf16 VAE: the SDXL VAE overflows in fp16, not in bf16. SDXL's VAE config says
  `force_upcast`, and diffusers' img2img (hires fix, face redraw) then casts the VAE to fp32
  and back around every encode; on a bf16 GPU that buys nothing, so the flag is cleared
  (txt2img already decodes a bf16 VAE in bf16).
- batched CFG: diffusers already runs the conditional and unconditional halves as one batch.
- LoRA hot-swap (`lora_slot`): one adapter slot at a max rank stays in the UNet; a tune switch
  copies weights into it (milliseconds, no recompilation, no CUDA-graph re-capture).
- low memory (24 GB cards): model CPU offload (or sequential offload), VAE slicing and tiling;
  compile is off there (offload hooks move weights in and out of the compiled graph).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from backends.local.env import EnvReader, pick
from backends.local.errors import ConfigError

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTO = "auto"
_OFF = dict.fromkeys(("0", "off", "false", "no"), "off")
_ON = dict.fromkeys(("1", "on", "true", "yes"), "on")
SWITCH_SPELLINGS = {**_ON, **_OFF, AUTO: AUTO}
"""On/off/auto switches (WORKER_CHANNELS_LAST, ...): how each spelling reads."""
COMPILE_SPELLINGS = {**{mode: mode for mode in COMPILE_MODES}, AUTO: AUTO, **_OFF, "none": "off"}
LOW_MEMORY_SPELLINGS = {
    **_OFF,
    **dict.fromkeys(("1", "on", "true", "yes", "offload", "model"), "offload"),
    "sequential": "sequential",
}


@dataclass(frozen=True)
class Accel:
    """The switches. `auto` values resolve per device in `resolve` (on for CUDA, off on CPU)."""

    compile: str = AUTO
    """`off`, a torch.compile mode (`default`, `max-autotune`, ...), or `auto` (CUDA: default)."""
    compile_cache_dir: Path | None = None
    """Persistent Inductor/Triton cache; None: torch's own temp folder (lost at reboot)."""
    compile_warmup: str = ""
    """Warm-up shapes `WxHxB,...` compiled at load; empty: native x1, native x4, 2*native x1."""
    channels_last: str = AUTO
    fuse_qkv: str = AUTO
    bf16_vae: str = AUTO
    lora_hotswap: bool = True
    max_lora_rank: int = 64
    """The slot's rank: tunes up to this rank swap in; a higher rank is refused with a message."""
    low_memory: str = "off"
    png_compress_level: int = 3
    """zlib level for the PNGs (PIL's default 6 is ~2-3x slower to encode for ~10 % less size)."""

    def resolve(self, device: str) -> Accel:
        """Replace `auto` by the device's choice, and drop levers that conflict."""
        cuda = device.startswith("cuda")

        def pick(value: str, on: str = "on") -> str:
            return (on if cuda else "off") if value == AUTO else value

        resolved = replace(
            self,
            compile=pick(self.compile, "default"),
            channels_last=pick(self.channels_last),
            fuse_qkv=pick(self.fuse_qkv),
            bf16_vae=pick(self.bf16_vae),
        )
        if resolved.low_memory != "off" and resolved.compile != "off":
            log.info("low-memory mode: compile off (offload hooks move weights every call)")
            resolved = replace(resolved, compile="off")
        if not resolved.lora_hotswap and resolved.fuse_qkv == "on":
            log.info("fused QKV needs the LoRA hot-swap slot (it rewrites LoRAs onto it): off")
            resolved = replace(resolved, fuse_qkv="off")
        return resolved

    @property
    def compiled(self) -> bool:
        return self.compile not in ("off", AUTO)

    @classmethod
    def off(cls) -> Accel:
        """Every lever off: the plain diffusers pipeline (the benchmark's stock side)."""
        return cls(
            compile="off", channels_last="off", fuse_qkv="off", bf16_vae="off", lora_hotswap=False
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, data_dir: Path | None = None
    ) -> Accel:
        """WORKER_COMPILE, WORKER_COMPILE_CACHE_DIR, WORKER_COMPILE_WARMUP, WORKER_CHANNELS_LAST,
        WORKER_FUSE_QKV, WORKER_BF16_VAE, WORKER_LORA_HOTSWAP, WORKER_LORA_MAX_RANK,
        WORKER_LOW_MEMORY, WORKER_PNG_COMPRESS; the cache defaults to `data_dir/compile-cache`."""
        read = EnvReader(environ)
        default_cache = data_dir / "compile-cache" if data_dir else None
        warmup = read.text("WORKER_COMPILE_WARMUP")
        parse_warmup(warmup, native=1024)  # a bad shape list is refused now, not at model load
        return cls(
            compile=read.choice("WORKER_COMPILE", COMPILE_SPELLINGS, AUTO),
            compile_cache_dir=read.path("WORKER_COMPILE_CACHE_DIR") or default_cache,
            compile_warmup=warmup,
            channels_last=read.choice("WORKER_CHANNELS_LAST", SWITCH_SPELLINGS, AUTO),
            fuse_qkv=read.choice("WORKER_FUSE_QKV", SWITCH_SPELLINGS, AUTO),
            bf16_vae=read.choice("WORKER_BF16_VAE", SWITCH_SPELLINGS, AUTO),
            lora_hotswap=read.choice("WORKER_LORA_HOTSWAP", SWITCH_SPELLINGS, AUTO) != "off",
            max_lora_rank=read.integer("WORKER_LORA_MAX_RANK", cls.max_lora_rank, minimum=1),
            low_memory=read.choice("WORKER_LOW_MEMORY", LOW_MEMORY_SPELLINGS, "off"),
            png_compress_level=read.integer(
                "WORKER_PNG_COMPRESS", cls.png_compress_level, minimum=0, maximum=9
            ),
        )


def parse_low_memory(value: str) -> str:
    """WORKER_LOW_MEMORY: `1`/`on`/`offload` -> model offload, `sequential`, else off.

    The trainer reads the same variable (gradient checkpointing), so `1` means both."""
    return pick("WORKER_LOW_MEMORY", value, LOW_MEMORY_SPELLINGS, "off")


def parse_warmup(spec: str, native: int) -> list[tuple[int, int, int]]:
    """`"1024x1024x1,2048x2048x1"` -> [(w, h, batch), ...]; empty: the shapes prompts use most
    (native size one image and four images, and the 2x hires-fix pass)."""
    if not spec:
        return [(native, native, 1), (native, native, 4), (2 * native, 2 * native, 1)]
    shapes = []
    for item in spec.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"WORKER_COMPILE_WARMUP item {item!r} is not WxHxB")
        w, h, b = (int(p) for p in parts)
        shapes.append((w, h, b))
    return shapes
