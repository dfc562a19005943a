"""Orphan files: what a crash left on disk that no row names, removed at start.

Writes are ordered so that a crash at any point leaves at worst files without a row, never a
row without its files: a tune's photos are written before the INSERT that names them; a
prompt's images before the UPDATE that names them (a re-run writes new names); a deletion
removes the row before the files. So at start, before the runner takes a job, any file under
the files folder that no row names, and any trained tune folder whose tune is gone, is an
orphan.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from backends.local.config import WorkerConfig
from backends.local.store import WorkerStore

log = logging.getLogger(__name__)


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
