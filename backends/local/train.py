"""Training: the hook the queue calls for a tune, and the pivotal-tuning loop behind it.

What a tune trains (docs/architecture.md §3): a PEFT LoRA on the UNet's
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
  goes back to the queue and resumes from its last checkpoint, checkpoint.py) or the tune was
  deleted, and runs queued prompts before returning; `ctx.check()` raises the same between
  the sub-steps before the first step (photos, model load);
- the result goes to `job.out_dir` via `artefacts.save_artefacts`, plus `lora_kohya.safetensors`
  (the same LoRA in kohya keys, for A1111/ComfyUI); the queue then marks the tune trained.
- a TrainingFailed message is written for the user (too small photo, out of GPU memory ...).

The numbers (steps, rank, learning rates ...) and the per-worker knobs that set them are the
recipe's (training_recipe.py); a tune's own `steps` wins over the worker default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.local import checkpoint, training_data
from backends.local.accel import Accel
from backends.local.artefacts import KOHYA_FILE, Manifest, save_artefacts
from backends.local.errors import TrainingFailed
from backends.local.model_specs import native_size
from backends.local.training_recipe import TrainingDefaults, TrainJob

log = logging.getLogger(__name__)


@dataclass
class TrainContext:
    """What a running training may call back into (see the module docstring)."""

    between_steps: Callable[[float], None]
    """Call with the fraction done after each step: yields the GPU to queued prompts."""
    check: Callable[[], None] = lambda: None
    """Raises Aborted when the worker stops or the tune was deleted: called between the
    sub-steps before the first step (photos, model load, latents), so a cancel frees the GPU."""
    checkpointed: Callable[[Path], None] = lambda path: None
    """Called with each checkpoint file just written (checkpoint.py): the fleet copies it to
    shared storage, so a training whose machine dies resumes on another (fleet_checkpoint.py)."""


Trainer = Callable[[TrainJob, TrainContext], None]
"""The training hook's shape: `train_tune`, or a stand-in (a build without training, tests)."""


@dataclass
class TrainedTune:
    """A finished training: the pipeline with the tune applied, and what gets saved."""

    pipe: Any
    manifest: Manifest
    lora: dict[str, Any]
    embeddings: dict[str, Any]
    final_loss: float


def train_tune(job: TrainJob, ctx: TrainContext, defaults: TrainingDefaults | None = None) -> None:
    """TRAINING HOOK: train `job` and write its artefacts to `job.out_dir`. `defaults`: the
    worker's knobs (WorkerConfig.training, which the queue binds); None: the recipe's own."""
    import torch

    from backends.local.models import load_model

    settings = (defaults or TrainingDefaults()).for_job(job)
    size = settings.resolution or native_size(job.base_model)
    # the photos first: a bad one fails the tune (PhotoError) before a model is loaded
    crops = training_data.prepare(job.images, size, job.face_crop)
    ctx.check()
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
    model = load_model(
        job.base_model, job.device, Accel.off(), config_dir=job.config_dir, check=ctx.check
    )
    try:
        trained = run_training(
            model, job, settings, crops, ctx.between_steps, checkpointed=ctx.checkpointed
        )
        save_tune(trained, job.out_dir)
        checkpoint.remove(job.out_dir)
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
    *,
    checkpointed: Callable[[Path], None] = lambda path: None,
) -> TrainedTune:
    """Pivotal tuning of `model` (a LoadedModel, modified in place) on `crops` (PIL images at
    the training size, from `training_data.prepare`)."""
    import torch

    from backends.local.pivotal import TokenEmbeddings
    from backends.local.train_loop import Loop

    generator = torch.Generator().manual_seed(settings.seed)
    latents = training_data.encode_latents(model.pipe.vae, crops, model.device)
    tokens = TokenEmbeddings(model.pipe, job.token, settings.n_tokens, generator)
    loop = Loop(model, tokens, latents, job.class_word, settings, generator)
    tag = checkpoint.fingerprint(job, settings, len(latents))
    saved = checkpoint.load(job.out_dir, tag)
    if saved is not None:
        loop.restore(saved)
        log.info("tune %s: resuming at step %d of %d", job.tune_id, saved.step, settings.steps)
    # the data is ready: let waiting prompts through before the long part
    between_steps(loop.start / settings.steps)
    loss = loop.run(
        between_steps, lambda state: checkpointed(checkpoint.save(job.out_dir, state, tag))
    )
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
