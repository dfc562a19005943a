"""Base-model loading: what `SDXL_MODEL` (and each extra base model) names becomes a pipeline.

Specs understood:
- `tiny`: a tiny random SDXL built in code with SDXL's geometry at tiny widths (a VAE that
  divides by 8, SDXL's three UNet levels with attention only on the lower two, SDXL's dual
  CLIP-L/CLIP-G conditioning with pooled text embeds and time ids) and a byte-level CLIP
  tokenizer built locally. Deterministic (weights from a fixed seed), no downloads; a 30-step
  1024 px image takes seconds on a CPU (`bench/tiny_model.py`). Its images are noise: it exists
  for tests and first runs, and it says so in the log.
- `random`: full-size SDXL 1.0 architecture with random weights: the real cost, no weights
  (used to time the GPU path; images are noise too).
- a folder: a diffusers SDXL folder (`model_index.json`).
- a `.safetensors`/`.ckpt` file: a single-file SDXL checkpoint (A1111/Civitai style). diffusers
  needs the SDXL configs beside it: `SDXL_CONFIG_DIR` (a diffusers folder without weights is
  enough), else it fetches them from the hub, which needs internet.
- anything else: a hub id (`stabilityai/stable-diffusion-xl-base-1.0`), where there is internet.

bf16 on a GPU (no fp16 overflow in the SDXL VAE, no upcast), fp32 on the CPU. The speed levers
(`accel`: compile, channels_last, fused QKV, the LoRA hot-swap slot, low-memory offload) are
applied here, once per load, so no request pays for them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backends.local import levers
from backends.local.accel import Accel, parse_warmup
from backends.local.lora_slot import LoraSlot
from backends.local.model_specs import (
    RANDOM_FULL,
    TINY,
    TINY_NATIVE_SIZE,
    makes_noise,
    native_size,
)

log = logging.getLogger(__name__)

TINY_SEED = 0
HUB_SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
"""Where single-file checkpoints get their configs without SDXL_CONFIG_DIR (needs internet)."""


@dataclass
class LoadedModel:
    """A base model ready to run: txt2img pipeline plus img2img sharing its components."""

    spec: str
    pipe: Any  # StableDiffusionXLPipeline
    img2img: Any  # StableDiffusionXLImg2ImgPipeline over the same modules
    device: str
    dtype: Any  # torch.dtype
    native_size: int
    accel: Accel = field(default_factory=Accel.off)
    """The levers as resolved for this device (what is really on)."""
    slot: LoraSlot | None = None
    """The LoRA hot-swap slot, when `accel.lora_hotswap` is on."""
    bound_tokens: list[str] = field(default_factory=list)
    """Tune tokens left bound in the text encoders (`tune_binding`)."""
    bound_tune: Any = None
    """The key of the tune whose LoRA and embeddings are bound now (`tune_binding`), or None."""
    scheduler_config: Any = None
    """The checkpoint's own scheduler config, as loaded: every prompt's scheduler is built
    from it, so one prompt's choice (e.g. Karras sigmas) never carries into the next."""

    def __post_init__(self) -> None:
        if self.scheduler_config is None:
            self.scheduler_config = self.pipe.scheduler.config

    @property
    def is_noise(self) -> bool:
        return makes_noise(self.spec)


def pick_device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    spec: str,
    device: str | None = None,
    accel: Accel | None = None,
    *,
    config_dir: str | None = None,
    check: Callable[[], None] = lambda: None,
) -> LoadedModel:
    """Build or load the pipeline named by `spec` on `device` (None: CUDA if present), with the
    speed levers `accel` (None: the defaults for the device) applied and compiled now.
    `config_dir`: SDXL_CONFIG_DIR, the configs a single-file checkpoint is read with.
    `check` runs between the sub-steps (read, place, compile) and raises Aborted to give up:
    a load takes minutes on a big model, a stop must not wait for all of it."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline

    device = pick_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if spec == TINY:
        pipe = build_tiny_pipeline()
        log.warning(
            "SDXL_MODEL=tiny: a tiny RANDOM SDXL for tests and first runs. Its images are noise; "
            "set SDXL_MODEL to a real SDXL checkpoint for photos."
        )
    elif spec == RANDOM_FULL:
        pipe = build_random_full_pipeline(device, dtype)
        log.warning("SDXL_MODEL=random: full-size SDXL with RANDOM weights (timing only; noise).")
    else:
        pipe = _load_real(spec, dtype, config_dir)
        log.info("loaded base model %s", spec)
    check()
    resolved = (accel or Accel()).resolve(device)
    levers.place(pipe, device, dtype, resolved)
    check()
    levers.apply_static(pipe, dtype, resolved)
    slot = None
    if resolved.lora_hotswap:
        slot = LoraSlot(pipe.unet, resolved.max_lora_rank, dtype, resizable=not resolved.compiled)
    pipe.set_progress_bar_config(disable=True)
    img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    model = LoadedModel(spec, pipe, img2img, device, dtype, native_size(spec), resolved, slot)
    if resolved.compiled:
        check()
        model.accel = _compile(model)
    log.info("model %s on %s: %s", spec, device, resolved)
    return model


def _compile(model: LoadedModel) -> Accel:
    """Compile the UNet and warm it up over the usual shapes; on failure stay eager."""
    accel = model.accel
    try:
        levers.compile_unet(model.pipe, accel)
        shapes = parse_warmup(accel.compile_warmup, model.native_size)
        seconds = levers.warm_up(model.pipe, shapes, model.device)
        log.info(
            "compiled the UNet (%s) and warmed %d shape(s) in %.1fs",
            accel.compile,
            len(shapes),
            seconds,
        )
        return accel
    except Exception:
        log.exception("torch.compile failed; the worker runs eager (WORKER_COMPILE=off)")
        levers.uncompile_unet(model.pipe)
        return replace(accel, compile="off")


def _load_real(spec: str, dtype: Any, config_dir: str | None) -> Any:
    from diffusers import StableDiffusionXLPipeline

    path = Path(spec).expanduser()
    if path.is_dir():
        return StableDiffusionXLPipeline.from_pretrained(path, torch_dtype=dtype)
    if path.suffix in (".safetensors", ".ckpt"):
        if not path.is_file():
            raise FileNotFoundError(f"SDXL checkpoint {path} does not exist")
        config = config_dir or HUB_SDXL_BASE
        return StableDiffusionXLPipeline.from_single_file(path, torch_dtype=dtype, config=config)
    return StableDiffusionXLPipeline.from_pretrained(spec, torch_dtype=dtype)


# -- tokenizer ------------------------------------------------------------------------------


def build_byte_tokenizer(pad_token: str) -> Any:
    """A CLIP tokenizer with a byte-level vocabulary and no merges, built without downloads.

    Every byte is a token (plus its end-of-word form), so any text tokenizes, words just take
    more tokens than with the real 49,408-entry vocabulary. Good enough for random weights.
    """
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        merges_file = Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer(
            str(vocab_file), str(merges_file), pad_token=pad_token, model_max_length=77
        )


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP byte -> printable unicode table (so BPE never sees control bytes)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


# -- random pipelines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """The configs of an SDXL's four networks, for building one with random weights."""

    unet: dict[str, Any]
    """`UNet2DConditionModel` arguments."""
    vae: dict[str, Any]
    """`AutoencoderKL` arguments."""
    text_encoder: dict[str, Any]
    """`CLIPTextConfig` of the CLIP-L encoder (its hidden states only)."""
    text_encoder_2: dict[str, Any]
    """`CLIPTextConfig` of the CLIP-G encoder (hidden states plus the pooled projection)."""


SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
SDXL_VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": False,
}
CLIP_COMMON = {
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-05,
}
SDXL_TE1 = {
    **CLIP_COMMON,
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
SDXL_TE2 = {
    **SDXL_TE1,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
SDXL_ARCHITECTURE = Architecture(SDXL_UNET, SDXL_VAE, SDXL_TE1, SDXL_TE2)
"""SDXL 1.0 as published: the real cost (`random`)."""

BYTE_VOCAB_SIZE = 2 * 256 + 2
"""`build_byte_tokenizer`'s vocabulary: every byte, its end-of-word form, start and end."""
TINY_TE1 = {
    **SDXL_TE1,
    "vocab_size": BYTE_VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "projection_dim": 32,
}
TINY_TE2 = {
    **SDXL_TE2,
    "vocab_size": BYTE_VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "projection_dim": 64,
}
TINY_TIME_EMBED_DIM = 8
TINY_ARCHITECTURE = Architecture(
    unet={
        **SDXL_UNET,
        # SDXL's levels and blocks (no attention at the top level, transformers below, more of
        # them at the bottom), at 1/40 of its widths: the 64x64 level of a 1024 px image is
        # then one 16-wide attention head, so 30 steps at 1024 px take seconds on a CPU.
        "block_out_channels": [8, 16, 32],
        "attention_head_dim": [1, 1, 2],
        "transformer_layers_per_block": [1, 1, 2],
        "norm_num_groups": 8,
        "cross_attention_dim": TINY_TE1["hidden_size"] + TINY_TE2["hidden_size"],
        "addition_time_embed_dim": TINY_TIME_EMBED_DIM,
        # SDXL's six time ids (original size, crop, target size), each embedded, + the pooled text
        "projection_class_embeddings_input_dim": 6 * TINY_TIME_EMBED_DIM
        + TINY_TE2["projection_dim"],
        "sample_size": TINY_NATIVE_SIZE // 8,
    },
    vae={
        **SDXL_VAE,
        # four blocks as SDXL's: the VAE divides by 8; one resnet per block (SDXL: two)
        "block_out_channels": [8, 8, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": TINY_NATIVE_SIZE,
    },
    text_encoder=TINY_TE1,
    text_encoder_2=TINY_TE2,
)
"""SDXL's geometry at tiny widths (`tiny`): the same code paths, seconds per image on a CPU."""


def build_tiny_pipeline(architecture: Architecture = TINY_ARCHITECTURE) -> Any:
    """The tiny SDXL on the CPU, weights from a fixed seed: the same model every time."""
    import torch

    return build_random_pipeline(architecture, "cpu", torch.float32)


def build_random_full_pipeline(device: str, dtype: Any) -> Any:
    """SDXL 1.0's architecture (configs as published) with random weights, built on `device`."""
    return build_random_pipeline(SDXL_ARCHITECTURE, device, dtype)


def build_random_pipeline(architecture: Architecture, device: str, dtype: Any) -> Any:
    """An SDXL pipeline of `architecture` with weights from `TINY_SEED`, built on `device`
    (construction draws from its own RNG state: the caller's stays untouched)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(TINY_SEED)
        unet = _cast(UNet2DConditionModel(**architecture.unet), dtype)
        vae = _cast(AutoencoderKL(**architecture.vae), dtype)
        te1 = _cast(CLIPTextModel(CLIPTextConfig(**architecture.text_encoder)), dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**architecture.text_encoder_2))
        te2 = _cast(te2, dtype)
    tok1, tok2 = build_byte_tokenizer("<|endoftext|>"), build_byte_tokenizer("!")
    return _assemble(unet, vae, te1, te2, tok1, tok2)


def _cast(module: Any, dtype: Any) -> Any:
    """`module` in `dtype`, cast only when it is not (diffusers warns on every cast)."""
    return module if module.dtype == dtype else module.to(dtype)


def _assemble(unet: Any, vae: Any, te1: Any, te2: Any, tok1: Any, tok2: Any) -> Any:
    """An SDXL pipeline from built modules, with SDXL's own noise schedule and Euler-a."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=te1.eval(),
        text_encoder_2=te2.eval(),
        tokenizer=tok1,
        tokenizer_2=tok2,
        unet=unet.eval(),
        scheduler=scheduler,
    )


class ModelCache:
    """Keeps the one base model in use resident; switching base models evicts the other.

    One GPU holds one SDXL comfortably, two only barely; operators with several base models pay
    a reload when prompts alternate between them, which is the honest cost of a single GPU.
    """

    def __init__(
        self,
        specs: dict[int, str],
        device: str | None,
        accel: Accel | None = None,
        *,
        config_dir: str | None = None,
    ) -> None:
        self.specs = specs
        self.device = device
        self.accel = accel
        self.config_dir = config_dir
        self._loaded: tuple[int, LoadedModel] | None = None

    def get(self, base_tune_id: int, check: Callable[[], None] = lambda: None) -> LoadedModel:
        """The model of `base_tune_id`, loaded now if another (or none) is resident; `check`
        as in `load_model` (an aborted load leaves no model resident)."""
        if self._loaded is not None and self._loaded[0] == base_tune_id:
            return self._loaded[1]
        spec = self.specs[base_tune_id]
        if self._loaded is not None:
            compiled = self._loaded[1].accel.compiled
            self._loaded = None
            _free_memory(compiled)
        model = load_model(spec, self.device, self.accel, config_dir=self.config_dir, check=check)
        self._loaded = (base_tune_id, model)
        return model


def _free_memory(compiled: bool = False) -> None:
    """Release an evicted model; dynamo's code cache holds its modules until reset."""
    import gc

    import torch

    if compiled:
        torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
