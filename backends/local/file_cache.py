"""A GPU worker's local copies of trained tunes (issue #16): the files live in shared storage,
a prompt needs them on local disk, and fetching them for every prompt would cost more than the
prompt. The most recently used `capacity` tunes stay; the least recently used go first.

Storage layout of a trained tune: `lora/<tune id>/<file>` (the artefact files of
artefacts.py); the API's `/files/...` never serves that prefix's siblings by guess, as each
prompt image name carries a random stamp.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import OrderedDict
from pathlib import Path

from backends.local.artefacts import (
    EMBEDDINGS_FILE,
    KOHYA_FILE,
    LORA_FILE,
    MANIFEST_FILE,
    has_artefacts,
)
from backends.local.storage import FileStorage

REQUIRED_FILES = (LORA_FILE, EMBEDDINGS_FILE, MANIFEST_FILE)
"""What a prompt needs of a tune; the Kohya copy is for downloads only and stays in storage."""
UPLOADED_FILES = (*REQUIRED_FILES, KOHYA_FILE)


def tune_key(tune_id: int, name: str) -> str:
    return f"lora/{tune_id}/{name}"


async def upload_tune(storage: FileStorage, tune_id: int, folder: Path) -> None:
    """Put a trained tune's files in storage (the manifest last: a reader that finds it finds
    the rest)."""
    for name in UPLOADED_FILES:
        path = folder / name
        if path.is_file() and name != MANIFEST_FILE:
            await storage.put(tune_key(tune_id, name), await asyncio.to_thread(path.read_bytes))
    manifest = (folder / MANIFEST_FILE).read_bytes()
    await storage.put(tune_key(tune_id, MANIFEST_FILE), manifest, "application/json")


class TuneFileCache:
    """Tune folders under `root`, fetched from `storage` on first use, LRU-evicted."""

    def __init__(self, storage: FileStorage, root: Path, capacity: int) -> None:
        self.storage = storage
        self.root = root
        self.capacity = capacity
        self._order: OrderedDict[int, Path] = OrderedDict()
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many tunes were fetched from storage (a hit fetches nothing)."""

    async def folder(self, tune_id: int) -> Path:
        """The local folder of a trained tune, fetched when it is not here."""
        async with self._lock:
            folder = self.root / str(tune_id)
            if tune_id not in self._order or not has_artefacts(folder):
                await self._fetch(tune_id, folder)
            self._order[tune_id] = folder
            self._order.move_to_end(tune_id)
            while len(self._order) > self.capacity:
                _, oldest = self._order.popitem(last=False)
                await asyncio.to_thread(shutil.rmtree, oldest, True)
            return folder

    async def _fetch(self, tune_id: int, folder: Path) -> None:
        """Download into a side folder, then rename: a crash never leaves half a tune here."""
        partial = self.root / f".{tune_id}.partial"
        await asyncio.to_thread(shutil.rmtree, partial, True)
        partial.mkdir(parents=True)
        for name in REQUIRED_FILES:
            data = await self.storage.read(tune_key(tune_id, name))
            await asyncio.to_thread((partial / name).write_bytes, data)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        partial.rename(folder)
        self.fetches += 1
