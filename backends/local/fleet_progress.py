"""A fleet GPU worker's job progress, published to the jobs' rows for the API replicas.

The GPU worker and the API run in different processes (often on different machines), so the
book the job threads write (`job_progress.JobProgress`) is copied to the row's `progress` and
`eta` columns every PUBLISH_EVERY_S, a value only when it changed: one small UPDATE per running
job and second at most, whatever the step rate. The replicas read the columns with the row
(`fleet_api.QueueView.job_progress`) and show them only while the row is `running`, so what a
worker that died left behind is never shown for a queued job.
"""

from __future__ import annotations

import asyncio
import logging

from backends.local.fleet_jobs import FleetStore, database_away
from backends.local.job_progress import JobKey, JobProgress

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 1.0
NOT_PUBLISHED = {"progress": None, "eta": None}
"""The columns as a job starts (a run before it, on this or another GPU, may have left them)."""


class ProgressPublisher:
    """Copies `progress` to the rows until cancelled."""

    def __init__(self, progress: JobProgress, store: FleetStore) -> None:
        self.progress = progress
        self.store = store
        self._published: dict[JobKey, tuple[float, str | None]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            try:
                await self.publish()
            except Exception as exc:  # progress is for show: never worth the GPU worker
                if database_away(exc):
                    log.debug("progress not published: the database is away (%s)", exc)
                else:
                    log.exception("could not publish the jobs' progress")

    async def publish(self) -> None:
        """Write what changed since the last publication; forget the jobs that ended."""
        now = self.progress.snapshot()
        for key, figures in now.items():
            if self._published.get(key) != figures:
                kind, row_id = key
                await self.store.set_progress(kind, row_id, *figures)
                self._published[key] = figures
        for key in self._published.keys() - now.keys():
            del self._published[key]
