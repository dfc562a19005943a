"""The training recipe: what a tune trains, with which numbers, and the per-worker knobs.

What a tune trains (docs/architecture.md §3): a PEFT LoRA on the UNet's
attention projections (`LORA_TARGETS`) plus new token embeddings for the user's token in both
text encoders; the embeddings learn for the first `pivot` share of the steps, then freeze while
the LoRA goes on. The numbers follow cog-sdxl / diffusers' advanced SDXL script (AdamW flavour).

Kept apart from train.py (the hook the queue calls) and train_loop.py (how one step runs), which
both read it, so the numbers read in one place and neither of them imports the other's.

Per-worker defaults come from the environment, read with the rest of WorkerConfig at start (a
bad value stops the worker there): `WORKER_TRAIN_<FIELD>` for every TrainingDefaults field, e.g.
`WORKER_TRAIN_STEPS=1500`, `WORKER_TRAIN_RANK=16`, `WORKER_TRAIN_UNET_LR=5e-5`,
`WORKER_TRAIN_RESOLUTION=768`; and `WORKER_LOW_MEMORY=1` (the switch accel.py reads for
generation) also turns on gradient checkpointing (~+50 % compute per step, far less memory).
A tune's own `steps` wins over the worker default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backends.local.accel import LOW_MEMORY_SPELLINGS
from backends.local.env import EnvReader
from backends.local.errors import ConfigError, TrainingFailed
from backends.local.model_specs import TINY

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
"""The attention projections of every UNet transformer block (self- and cross-attention)."""
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
    config_dir: str | None = None
    """SDXL_CONFIG_DIR, for a base model that is a single-file checkpoint."""


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
    checkpoint_steps: int = 50
    """Save the training state every this many steps (0: never); a stopped or killed training
    resumes from its last checkpoint (checkpoint.py) instead of step 0."""

    @property
    def lora_alpha(self) -> float:
        return self.alpha or float(self.rank)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingDefaults:
        """Defaults overridden by `WORKER_TRAIN_<FIELD>` and `WORKER_LOW_MEMORY`, each checked."""
        read = EnvReader(environ)
        resolution = read.integer("WORKER_TRAIN_RESOLUTION", cls.resolution, minimum=0)
        if resolution % 8:
            raise ConfigError(f"WORKER_TRAIN_RESOLUTION={resolution}: use a multiple of 8")
        return cls(
            steps=read.integer("WORKER_TRAIN_STEPS", cls.steps, minimum=0, maximum=MAX_STEPS),
            batch_size=read.integer("WORKER_TRAIN_BATCH_SIZE", cls.batch_size, minimum=1),
            rank=read.integer("WORKER_TRAIN_RANK", cls.rank, minimum=1),
            alpha=read.number("WORKER_TRAIN_ALPHA", cls.alpha, minimum=0),
            unet_lr=read.number("WORKER_TRAIN_UNET_LR", cls.unet_lr, minimum=0),
            embedding_lr=read.number("WORKER_TRAIN_EMBEDDING_LR", cls.embedding_lr, minimum=0),
            weight_decay=read.number("WORKER_TRAIN_WEIGHT_DECAY", cls.weight_decay, minimum=0),
            embedding_weight_decay=read.number(
                "WORKER_TRAIN_EMBEDDING_WEIGHT_DECAY", cls.embedding_weight_decay, minimum=0
            ),
            pivot=read.number("WORKER_TRAIN_PIVOT", cls.pivot, minimum=0, maximum=1),
            n_tokens=read.integer("WORKER_TRAIN_N_TOKENS", cls.n_tokens, minimum=1),
            grad_clip=read.number("WORKER_TRAIN_GRAD_CLIP", cls.grad_clip, minimum=0),
            seed=read.integer("WORKER_TRAIN_SEED", cls.seed, minimum=0),
            resolution=resolution,
            # the generation side's switch (accel.py): any low-memory mode also checkpoints
            low_memory=read.choice("WORKER_LOW_MEMORY", LOW_MEMORY_SPELLINGS, "off") != "off",
            checkpoint_steps=read.integer(
                "WORKER_TRAIN_CHECKPOINT_STEPS", cls.checkpoint_steps, minimum=0
            ),
        )

    def for_job(self, job: TrainJob) -> TrainingDefaults:
        """The tune's own `steps` wins; refuse nonsense rather than train for a day."""
        default = TINY_STEPS if job.base_model == TINY else SDXL_STEPS
        steps = job.steps or self.steps or default
        if not 1 <= steps <= MAX_STEPS:
            raise TrainingFailed(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        return dataclasses.replace(self, steps=steps)
