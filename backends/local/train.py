"""Training: the hook the queue calls for a tune, and the pivotal-tuning loop behind it.

What a tune trains (design.md §3, reference/sdxl-worker.md §7): a PEFT LoRA on the UNet's
attention projections (to_q, to_k, to_v, to_out.0) plus new token embeddings for the user's
token in both text encoders (pivotal.py); the embeddings learn for the first `pivot` share of the
steps, then freeze while the LoRA goes on. Data, crops and cached latents: training_data.py.

The trainer loads its own copy of the base model (the engine's copy keeps serving prompts, and
its LoRA/embedding swaps never meet the training's). On a GPU the frozen base runs in bf16 and
the trainable parameters are fp32 (PEFT computes the LoRA branch in its weights' dtype, the
token rows are cast on the way in); on the CPU everything is fp32.

Contract with the queue (so generation never starves behind a long training):
- `ctx.between_steps(fraction)` after every optimizer step: it reports progress (the queue turns
  it into the tune's `progress` and `eta`), raises Aborted when the worker stops (the tune
  goes back to the queue and starts over), and runs queued prompts before returning;
- the result goes to `job.out_dir` via `artefacts.save_artefacts`, plus `lora_kohya.safetensors`
  (the same LoRA in kohya keys, for A1111/ComfyUI); the queue then marks the tune trained.
- a TrainingFailed message is written for the user (too small photo, out of GPU memory ...).

Per-worker defaults come from the environment (WorkerConfig is the generation side's; these
are the trainer's own): `WORKER_TRAIN_<FIELD>` for every TrainingDefaults field, e.g.
`WORKER_TRAIN_STEPS=1500`, `WORKER_TRAIN_RANK=16`, `WORKER_TRAIN_UNET_LR=5e-5`,
`WORKER_TRAIN_RESOLUTION=768`; and `WORKER_LOW_MEMORY=1` (the switch accel.py reads for
generation) also turns on gradient checkpointing (~+50 % compute per step, far less memory).
A tune's own `steps` wins over the worker default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.local import training_data
from backends.local.accel import Accel, parse_low_memory
from backends.local.artefacts import Manifest, save_artefacts
from backends.local.errors import TrainingFailed
from backends.local.models import TINY

log = logging.getLogger(__name__)

KOHYA_FILE = "lora_kohya.safetensors"
MAX_STEPS = 10_000
SDXL_STEPS = 1000
TINY_STEPS = 100
"""The tiny model's images are noise whatever it learns: a first run should not wait minutes."""


@dataclass(frozen=True)
class TrainJob:
    """A queued tune, as the trainer needs it."""

    tune_id: int
    token: str
    class_word: str
    base_tune_id: int
    base_model: str
    images: list[Path]
    steps: int | None
    face_crop: bool | None
    out_dir: Path
    device: str | None


@dataclass
class TrainContext:
    """What a running training may call back into (see the module docstring)."""

    between_steps: Callable[[float], None]
    """Call with the fraction done after each step: yields the GPU to queued prompts."""


@dataclass(frozen=True)
class TrainingDefaults:
    """The recipe (cog-sdxl / diffusers' advanced SDXL script, AdamW flavour) and its knobs."""

    steps: int = 0
    """0 = the base model's default: 1000 for SDXL (the recipe), 100 for `tiny`."""
    batch_size: int = 1
    rank: int = 32
    alpha: float = 0.0
    """LoRA alpha; 0 means alpha == rank (scale 1, what every loader assumes without metadata)."""
    unet_lr: float = 1e-4
    embedding_lr: float = 3e-4
    weight_decay: float = 1e-4
    embedding_weight_decay: float = 1e-3
    pivot: float = 0.5
    """Share of the steps during which the token embeddings learn."""
    n_tokens: int = 2
    grad_clip: float = 1.0
    seed: int = 0
    resolution: int = 0
    """Training side in px; 0 = the base model's native size (1024 for SDXL, 128 for `tiny`).
    768 roughly halves the step cost (cog-sdxl's choice) at some loss of detail."""
    low_memory: bool = False

    @property
    def lora_alpha(self) -> float:
        return self.alpha or float(self.rank)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingDefaults:
        """Defaults overridden by `WORKER_TRAIN_<FIELD>` and `WORKER_LOW_MEMORY`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "low_memory":  # not a WORKER_TRAIN_ name: see below
                continue
            name = f"WORKER_TRAIN_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        # the generation side's switch (accel.py): any low-memory mode also means checkpointing
        low = parse_low_memory(env.get("WORKER_LOW_MEMORY", "")) != "off"
        return cls(**values, low_memory=low)

    def for_job(self, job: TrainJob) -> TrainingDefaults:
        """The tune's own `steps` wins; refuse nonsense rather than train for a day."""
        default = TINY_STEPS if job.base_model == TINY else SDXL_STEPS
        steps = job.steps or self.steps or default
        if not 1 <= steps <= MAX_STEPS:
            raise TrainingFailed(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        return dataclasses.replace(self, steps=steps)


@dataclass
class TrainedTune:
    """A finished training: the pipeline with the tune applied, and what gets saved."""

    pipe: Any
    manifest: Manifest
    lora: dict[str, Any]
    embeddings: dict[str, Any]
    final_loss: float


def train_tune(job: TrainJob, ctx: TrainContext, defaults: TrainingDefaults | None = None) -> None:
    """TRAINING HOOK: train `job` and write its artefacts to `job.out_dir`."""
    import torch

    from backends.local.models import load_model, native_size

    settings = (defaults or TrainingDefaults.from_env()).for_job(job)
    size = settings.resolution or native_size(job.base_model)
    # the photos first: a bad one fails the tune (PhotoError) before a model is loaded
    crops = training_data.prepare(job.images, size, job.face_crop)
    log.info(
        "tune %s: %d steps at %d px, rank %d, %d crops from %d photos",
        job.tune_id,
        settings.steps,
        size,
        settings.rank,
        len(crops),
        len(job.images),
    )
    # the plain pipeline: no compile, fused QKV or LoRA hot-swap slot (generation's levers)
    model = load_model(job.base_model, job.device, Accel.off())
    try:
        trained = run_training(model, job, settings, crops, ctx.between_steps)
        save_tune(trained, job.out_dir)
    except torch.OutOfMemoryError:
        raise TrainingFailed(
            "the GPU ran out of memory while training; the operator can set WORKER_LOW_MEMORY=1"
            " (gradient checkpointing) or WORKER_TRAIN_BATCH_SIZE=1"
        ) from None
    finally:
        del model
        _free_memory()
    log.info("tune %s: trained, final loss %.4f", job.tune_id, trained.final_loss)


def run_training(
    model: Any,
    job: TrainJob,
    settings: TrainingDefaults,
    crops: list[Any],
    between_steps: Callable[[float], None],
) -> TrainedTune:
    """Pivotal tuning of `model` (a LoadedModel, modified in place) on `crops` (PIL images at
    the training size, from `training_data.prepare`)."""
    import torch

    from backends.local.pivotal import TokenEmbeddings
    from backends.local.train_loop import Loop

    generator = torch.Generator().manual_seed(settings.seed)
    latents = training_data.encode_latents(model.pipe.vae, crops, model.device)
    between_steps(0.0)  # the data is ready: let waiting prompts through before the long part
    tokens = TokenEmbeddings(model.pipe, job.token, settings.n_tokens, generator)
    loop = Loop(model, tokens, latents, job.class_word, settings, generator)
    loss = loop.run(between_steps)
    tokens.bind()
    manifest = Manifest(
        token=job.token,
        class_word=job.class_word,
        n_tokens=settings.n_tokens,
        base_model=job.base_model,
        rank=settings.rank,
        alpha=settings.lora_alpha,
    )
    lora = {k: v.detach().to(model.dtype).cpu() for k, v in loop.lora_state_dict().items()}
    return TrainedTune(model.pipe, manifest, lora, tokens.export(), loss)


def save_tune(trained: TrainedTune, folder: Path) -> None:
    """The kohya export first, then the three part-1 files (the manifest last: complete)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    kohya = kohya_state_dict(trained.lora, trained.manifest.lora_alpha)
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(trained.manifest.rank),
        "ss_network_alpha": str(trained.manifest.lora_alpha),
        "ss_base_model_version": "sdxl_base_v1-0",
    }
    tmp = folder / (KOHYA_FILE + ".tmp")
    save_file(kohya, str(tmp), metadata=metadata)
    tmp.replace(folder / KOHYA_FILE)
    save_artefacts(folder, trained.manifest, trained.lora, trained.embeddings)


def kohya_state_dict(lora: dict[str, Any], alpha: float) -> dict[str, Any]:
    """PEFT keys -> kohya keys (`lora_unet_..._to_q.lora_down.weight` + `.alpha`), via diffusers'
    own converter (what its advanced SDXL script writes for A1111/ComfyUI users)."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    prefixed = {(k if k.startswith("unet.") else f"unet.{k}"): v for k, v in lora.items()}
    out = convert_state_dict_to_kohya(prefixed)
    for key in out:
        if key.endswith(".alpha"):
            out[key] = torch.tensor(float(alpha))
    return {k: v.contiguous() for k, v in out.items()}


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
