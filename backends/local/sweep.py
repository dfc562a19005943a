"""The worker's sweeps: orphan files at start, and (WORKER_RETENTION_DAYS) what is unused.

Orphan files: what a crash left on disk that no row names, removed at start.

Writes are ordered so that a crash at any point leaves at worst files without a row, never a
row without its files: a tune's photos are written before the INSERT that names them; a
prompt's images before the UPDATE that names them (a re-run writes new names); a deletion
removes the row before the files. So at start, before the runner takes a job, any file under
the files folder that no row names, and any trained tune folder whose tune is gone, is an
orphan.

Retention (issue 15), off unless WORKER_RETENTION_DAYS is set: once at start and then daily,
`expire_unused` deletes, for clients that never delete what they sent (the bot deletes through
the API by its own RETENTION_DAYS, so the worker's default is 0, off: a worker deleting a model
the bot still lists would break it without a word):

- prompts that ended longer ago than that, with their result files;
- tunes last used (trained, or named by a prompt) longer ago than that, with their model
  folder and photos; a tune a queued prompt waits for stays;
- the training photos of every tune that ended longer ago than that (the model no longer
  needs them; the tune keeps working).

Rows go before files, as for a DELETE: a crash in between leaves orphans, removed at start.
The log gives counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backends.local.config import WorkerConfig
from backends.local.records import JobKind, Row
from backends.local.store import JobStore, WorkerStore, astria_time

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 24 * 3600.0


async def remove_orphans(store: WorkerStore, config: WorkerConfig) -> int:
    """Delete files no row names and tune folders of deleted tunes; how many went."""
    named = await store.referenced_files()
    removed = 0
    for path in sorted(config.files_dir.rglob("*"), reverse=True):  # children before parents
        rel = path.relative_to(config.files_dir).as_posix()
        if path.is_file() and rel not in named:
            path.unlink(missing_ok=True)
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    tunes = {str(i) for i in await store.tune_ids()}
    for folder in _subfolders(config.tunes_dir):
        if folder.name not in tunes:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d orphan file(s) left by an interrupted write", removed)
    return removed


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


@dataclass
class Expired:
    """What one retention sweep deleted (counts: safe to log)."""

    prompts: int = 0
    tunes: int = 0
    photos: int = 0


async def expire_unused(
    store: JobStore, config: WorkerConfig, now: datetime | None = None
) -> Expired:
    """Apply WORKER_RETENTION_DAYS as of `now` (tests pass their own clock); idempotent."""
    expired = Expired()
    if config.retention_days <= 0:
        return expired
    cutoff = astria_time((now or datetime.now(UTC)) - timedelta(days=config.retention_days))
    for prompt in await store.finished_before(JobKind.PROMPT, cutoff):
        if await store.delete_prompt(prompt["id"]):
            _remove(_folders(prompt, JobKind.PROMPT, config))
            expired.prompts += 1
    used = await store.tunes_prompted_since(cutoff)
    for tune in await store.finished_before(JobKind.TUNE, cutoff):
        if tune["id"] in used or await store.prompts_using_tune(tune["id"]):
            if tune["images"]:  # in use: only the photos go
                await store.set_tune_images(tune["id"], [])
                _remove({(config.files_dir / p).parent for p in tune["images"]})
                expired.photos += len(tune["images"])
        elif await store.delete_tune(tune["id"]):
            _remove(_folders(tune, JobKind.TUNE, config))
            expired.tunes += 1
            expired.photos += len(tune["images"])
    if expired != Expired():
        log.info(
            "retention: removed %d prompts, %d tunes and %d training photos unused for %d days",
            expired.prompts,
            expired.tunes,
            expired.photos,
            config.retention_days,
        )
    return expired


def _folders(row: Row, kind: JobKind, config: WorkerConfig) -> set[Path]:
    """Where a tune or prompt keeps files: its photos' or images' folders, its own folder."""
    folders = {(config.files_dir / p).parent for p in row["images"]}
    folders.add(config.files_dir / kind.table / str(row["id"]))
    if kind == JobKind.TUNE:
        folders.add(config.tunes_dir / str(row["id"]))
    return folders


def _remove(folders: set[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


class RetentionTimer:
    """Runs `expire_unused` at start and then every day, while the worker runs (only when
    WORKER_RETENTION_DAYS is set). A failed sweep is logged and tried again the next day."""

    def __init__(self, store: JobStore, config: WorkerConfig) -> None:
        self._store = store
        self._config = config
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._config.retention_days > 0 and self._task is None:
            self._task = asyncio.create_task(self._daily(), name="worker-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _daily(self) -> None:
        while True:
            try:
                await expire_unused(self._store, self._config)
            except Exception:  # a database or disk hiccup must not end the timer
                log.exception("retention sweep failed; trying again in a day")
            await asyncio.sleep(SWEEP_EVERY_S)
