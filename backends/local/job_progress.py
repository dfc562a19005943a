"""How far the jobs under way are: each one's fraction done (0..1) and when it should end.

One book per process that runs jobs. The single worker's runner answers its API from it; a
fleet GPU worker runs in another process than the API replicas, so it publishes the book to the
jobs' rows (`fleet_progress.py`), where every replica reads it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from backends.local.records import JobKind
from backends.local.store import astria_time

JobKey = tuple[JobKind, int]


class JobProgress:
    """The fraction done of each job from its start until it lets go of the GPU, and an ETA
    from the rate since the job's first report (so loading a model or caching latents does not
    skew it; prompts served in between do count, as they delay it)."""

    def __init__(self) -> None:
        self.fraction: dict[JobKey, float] = {}
        self.eta: dict[JobKey, str] = {}
        self._clock: dict[JobKey, tuple[float, float]] = {}  # first report: when, how far

    def begin(self, key: JobKey) -> None:
        self.fraction[key] = 0.0

    def note(self, key: JobKey, fraction: float) -> None:
        """In the job's thread, after a step; nothing once the job has ended here (a thread
        left running after its task was cancelled must not bring it back)."""
        if key not in self.fraction:
            return
        self.fraction[key] = fraction
        now = time.monotonic()
        start, first = self._clock.setdefault(key, (now, fraction))
        if fraction > first:
            left = (now - start) / (fraction - first) * (1.0 - fraction)
            self.eta[key] = astria_time(datetime.now(UTC) + timedelta(seconds=left))

    def end(self, key: JobKey) -> None:
        self.fraction.pop(key, None)
        self.eta.pop(key, None)
        self._clock.pop(key, None)

    def snapshot(self) -> dict[JobKey, tuple[float, str | None]]:
        """Every job's (fraction, eta) now; safe beside the job threads that write the book."""
        return {key: (fraction, self.eta.get(key)) for key, fraction in list(self.fraction.items())}
