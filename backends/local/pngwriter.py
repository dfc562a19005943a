"""Encode and write PNGs on background threads while the GPU keeps working.

A 2048² PNG takes a few hundred milliseconds of zlib on the CPU; doing that after the last
image, one file after another, adds to every prompt. The engine hands each image over as soon
as it is final (with `inpaint_faces` image 1 is written while image 2's face is redrawn), zlib
releases the GIL so the writes run in parallel, and the prompt waits only for what is left.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PIL import Image

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
WORKERS = 4


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="png")
        return _POOL


class PngWriter:
    """Collects one prompt's writes; `wait` returns once every file is on disk (or raises)."""

    def __init__(self, compress_level: int = 3) -> None:
        self.compress_level = compress_level
        self._futures: list[Future[None]] = []

    def submit(self, image: Image.Image, path: Path) -> None:
        self._futures.append(_pool().submit(self._write, image, path))

    def wait(self) -> None:
        futures, self._futures = self._futures, []
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise errors[0]

    def _write(self, image: Image.Image, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        image.save(tmp, format="PNG", compress_level=self.compress_level)
        tmp.replace(path)
