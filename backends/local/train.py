"""Training: the hook the queue calls for a tune. The trainer itself is the next issue.

Until a trainer is here, `train_tune` raises TrainerUnavailable and the queue fails the tune with
that message in its `error` field (Astria clients see a failed tune, the bot tells the user),
instead of leaving it queued forever or faking a `trained_at`. The uploaded photos stay stored,
so an operator can re-submit once training lands.

Contract for the trainer (so generation never starves behind a long training):
- call `ctx.between_steps()` after every optimizer step: it reports progress, raises
  TrainingAborted when the worker stops, and runs any queued prompts to completion on this same
  GPU before returning (the training's own tensors stay where they are);
- write the result with `artefacts.save_artefacts(job.out_dir, ...)`; the queue then marks the
  tune trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class TrainerUnavailable(Exception):
    """This worker build cannot train; the message becomes the tune's `error`."""


class TrainingAborted(Exception):
    """The worker is stopping; the tune goes back to the queue and starts over next time."""


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


def train_tune(job: TrainJob, ctx: TrainContext) -> None:
    """TRAINING HOOK: train `job` and write its artefacts to `job.out_dir` (next issue)."""
    raise TrainerUnavailable(
        "Training is not available on this worker yet: backends.local.train.train_tune is not "
        "implemented. The photos are kept; submit the tune again once training is installed."
    )
