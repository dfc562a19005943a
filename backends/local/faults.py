"""Test fault hook (off by default): `WORKER_FAULT_AT=<action>:<point>` makes the worker fail
at one named write boundary, so the fault tests can prove a crash or a full disk there loses
nothing and leaves nothing behind. Actions: `kill` (SIGKILL itself, as `kill -9` would) and
`enospc` (raise "No space left on device", as a full disk would). Never set it in production.
"""

from __future__ import annotations

import enum
import errno
import os
import signal

FAULT_ENV = "WORKER_FAULT_AT"


class FaultPoint(enum.StrEnum):
    """The write boundaries a fault can be injected at, in the order a job passes them."""

    TUNE_PHOTO_WRITE = "tune-photo-write"
    """Just before one of a new tune's photos is written."""
    TUNE_PHOTOS_WRITTEN = "tune-photos-written"
    """A new tune's photos are on disk, its row is not yet inserted."""
    TUNE_INSERTED = "tune-inserted"
    """The tune's row is committed, the answer not yet sent."""
    TRAINING_CHECKPOINTED = "training-checkpointed"
    """A training checkpoint was just written."""
    PROMPT_GENERATED = "prompt-generated"
    """A prompt's images are on disk, the row naming them is not yet updated."""


def fault_at(point: FaultPoint) -> None:
    """Fail here if `WORKER_FAULT_AT` names this point; nothing otherwise."""
    action, _, where = os.environ.get(FAULT_ENV, "").partition(":")
    if where != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"fault hook at {point}")
