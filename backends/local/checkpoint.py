"""Training checkpoints: a training interrupted at step k resumes at k, not at 0.

Every `WORKER_TRAIN_CHECKPOINT_STEPS` steps the loop writes everything the next step depends
on: the LoRA and token rows, AdamW's moments, the step, the recent losses and the training's
random generator (which draws crops, captions, noise and timesteps). A resumed run therefore
takes the same steps an uninterrupted one would have taken. The file sits in the tune's folder
(so a DELETE removes it) and goes once the tune is saved.

A checkpoint is only used by the training that wrote it: it carries a fingerprint of the recipe
and the job (steps, rank, learning rates, photos, ...), and one that does not match (the
operator changed a knob) or does not read is ignored with a log line: the training starts over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backends.local.faults import FaultPoint, fault_at
from backends.local.training_recipe import TrainingDefaults, TrainJob

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainingState:
    """What the loop needs to take step `step` as if it had never stopped."""

    step: int
    lora: list[torch.Tensor]
    tokens: list[torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    recent_losses: list[float]


def fingerprint(job: TrainJob, settings: TrainingDefaults, n_latents: int) -> str:
    """What makes two runs the same training (how often it checkpoints does not)."""
    recipe = dataclasses.asdict(settings)
    for knob in ("checkpoint_steps", "low_memory"):
        recipe.pop(knob, None)
    identity = {
        "recipe": recipe,
        "base_model": job.base_model,
        "token": job.token,
        "class_word": job.class_word,
        "images": [p.name for p in job.images],
        "face_crop": job.face_crop,
        "latents": n_latents,
    }
    return json.dumps(identity, sort_keys=True)


def save(folder: Path, state: TrainingState, tag: str) -> Path:
    """Write atomically (a kill mid-write leaves the previous checkpoint); the file."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    torch.save({"fingerprint": tag, **fields}, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)
    fault_at(FaultPoint.TRAINING_CHECKPOINTED)
    return folder / CHECKPOINT_FILE


def load(folder: Path, tag: str) -> TrainingState | None:
    """The checkpoint of this training, or None (none, another training's, unreadable)."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.pop("fingerprint") != tag:
            log.info("%s: written for other training settings, starting over", path)
            return None
        return TrainingState(**data)
    except Exception as exc:  # a torn or foreign file costs the progress, never the training
        log.warning("%s unreadable (%s), starting over", path, exc)
        return None


def remove(folder: Path) -> None:
    for name in (CHECKPOINT_FILE, CHECKPOINT_FILE + ".tmp"):
        (folder / name).unlink(missing_ok=True)
