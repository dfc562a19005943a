"""The ZIP of a shoot's full-size images, cut into parts that fit a platform's upload limit.

Images are compressed already, so they are stored, not deflated: the archive is their size plus
a small header per file, which is how a part is known to fit before it is written.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

ENTRY_OVERHEAD_BYTES = 200
"""Local header, central directory entry and name of one stored file, generously."""
ARCHIVE_OVERHEAD_BYTES = 100
"""The end-of-central-directory record, generously."""


def plan_parts(sizes: Sequence[int], limit_bytes: int) -> list[list[int]]:
    """The indexes of the files in each part, in order: each part under `limit_bytes`, except
    a file too big on its own, which gets a part of its own (the platform will say no)."""
    parts: list[list[int]] = []
    used = limit_bytes + 1  # no part open yet
    for index, size in enumerate(sizes):
        cost = size + ENTRY_OVERHEAD_BYTES
        if used + cost > limit_bytes:
            parts.append([])
            used = ARCHIVE_OVERHEAD_BYTES
        parts[-1].append(index)
        used += cost
    return parts


def write_parts(files: Sequence[Path], folder: Path, stem: str, limit_bytes: int) -> list[Path]:
    """Write `stem.zip` (or `stem-1.zip`, `stem-2.zip` ...) into `folder`; returns their paths.
    Inside, the files are numbered in order, so the parts together hold each image once."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = plan_parts([path.stat().st_size for path in files], limit_bytes)
    written = []
    for number, indexes in enumerate(parts, start=1):
        name = f"{stem}.zip" if len(parts) == 1 else f"{stem}-{number}.zip"
        target = folder / name
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
            for index in indexes:
                archive.write(files[index], f"{index + 1:03d}{files[index].suffix}")
        written.append(target)
    return written
