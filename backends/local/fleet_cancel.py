"""DELETE of a running tune or prompt stops it on the fleet's GPU worker (issue #16).

The DELETE lands on any API replica, which removes the row; the GPU worker that runs the job is
another process, likely another machine. The job's own abort checks (every denoising step,
every training step: `GpuJobs.check`) look at the row at most once per `ROW_CHECK_S`: when it
is gone the job stops there, frees the GPU for the next job, writes no result and sends no
callback, as on one machine (queue.py's `cancel`). One indexed SELECT a second per GPU: no
listener, no job id to find, and nothing to miss when the DELETE came from a replica that
restarted since.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from backends.local.errors import Aborted
from backends.local.fleet_jobs import FleetStore
from backends.local.records import JobKind

ROW_CHECK_S = 1.0
"""How often a running job looks for its row (the most a deleted job runs on)."""


class DeletedRowWatch:
    """The rows of the jobs under way on this GPU (a training, and a prompt it let through),
    and whether the innermost one was deleted."""

    def __init__(self, store: FleetStore, every_s: float = ROW_CHECK_S) -> None:
        self.store = store
        self.every_s = every_s
        self._rows: list[tuple[JobKind, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checked_at = 0.0

    @contextlib.contextmanager
    def watching(self, kind: JobKind, row_id: int) -> Iterator[None]:
        """On the loop, around a job's GPU work."""
        self._loop = asyncio.get_running_loop()
        self._rows.append((kind, row_id))
        self._checked_at = time.monotonic()
        try:
            yield
        finally:
            self._rows.remove((kind, row_id))

    def check(self) -> None:
        """In the job's thread: raise Aborted when the innermost job's row is gone."""
        if not self._rows or self._loop is None:
            return
        now = time.monotonic()
        if now - self._checked_at < self.every_s:
            return
        self._checked_at = now
        kind, row_id = self._rows[-1]
        found = asyncio.run_coroutine_threadsafe(self.store.get_row(kind, row_id), self._loop)
        if found.result() is None:
            raise Aborted(f"{kind} {row_id} was deleted")
