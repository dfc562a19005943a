"""A fleet training's checkpoint travels through shared storage (issue #16): a training killed
on one GPU worker resumes on another from its last checkpoint, not from step 0.

The trainer writes each checkpoint to its local folder as on one machine (checkpoint.py); the
GPU worker then copies the file to `lora/<tune id>/checkpoint/` in storage (`Uploader`, from the
trainer's thread, before the next step). A worker that takes the training up fetches that copy
into its fresh folder first (`fetch`), and the trainer's own resume does the rest: the
checkpoint's fingerprint (recipe, photos by name, base model) decides whether it fits. The copy
goes when the tune is trained (`drop`) and with the tune's folder when it is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from backends.local.checkpoint import CHECKPOINT_FILE
from backends.local.file_cache import tune_key
from backends.local.storage import FileStorage

log = logging.getLogger(__name__)


def checkpoint_folder(tune_id: int) -> str:
    return tune_key(tune_id, "checkpoint")


def checkpoint_key(tune_id: int) -> str:
    return f"{checkpoint_folder(tune_id)}/{CHECKPOINT_FILE}"


async def fetch(storage: FileStorage, tune_id: int, out_dir: Path) -> bool:
    """Put the tune's stored checkpoint, if any, where the trainer looks for it."""
    if not await storage.exists(checkpoint_key(tune_id)):
        return False
    data = await storage.read(checkpoint_key(tune_id))
    out_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread((out_dir / CHECKPOINT_FILE).write_bytes, data)
    log.info("tune %s: checkpoint fetched from storage (%d bytes)", tune_id, len(data))
    return True


async def drop(storage: FileStorage, tune_id: int) -> None:
    await storage.delete_folder(checkpoint_folder(tune_id))


class Uploader:
    """`TrainContext.checkpointed` for one training: copies each checkpoint to storage."""

    def __init__(self, storage: FileStorage, tune_id: int) -> None:
        self.storage = storage
        self.tune_id = tune_id
        self.loop = asyncio.get_running_loop()

    def __call__(self, path: Path) -> None:
        """In the trainer's thread: the upload runs on the loop; the training waits for it,
        so a kill after this step resumes from here."""
        upload = self.storage.put(checkpoint_key(self.tune_id), path.read_bytes())
        asyncio.run_coroutine_threadsafe(upload, self.loop).result()
