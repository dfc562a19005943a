"""How the fleet survives its GPU workers (issue #16): dead ones, hung ones, and jobs that kill
them.

- A dead worker (kill -9, a lost machine) stops its procrastinate heartbeat. Every GPU worker
  looks for jobs `doing` on a worker whose heartbeat is older than WORKER_STALLED_S
  (procrastinate's `get_stalled_jobs`) and hands them back with `retry_job`: the job runs again
  on the next free worker, within about WORKER_STALLED_S plus one look.
- A job that was handed back WORKER_MAX_TRIES - 1 times and took down yet another worker is
  failed (its row `failed` with a user error, its callback sent), not retried forever.
- A hung GPU call keeps the heartbeat going (it runs on a thread), so the `Watchdog` watches the
  job's own progress: no step for WORKER_HUNG_S and the process exits at once, which makes its
  job a dead worker's job, rescued as above on another machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import procrastinate
from procrastinate.jobs import Status

from backends.local.fleet_jobs import FleetStore, Queue, Task
from backends.local.records import JobKind, JobState

log = logging.getLogger(__name__)

KIND_OF_TASK: dict[str, JobKind] = {Task.PROMPT: JobKind.PROMPT, Task.TUNE: JobKind.TUNE}
HUNG_EXIT_STATUS = 70
"""The exit status of a worker that left a hung GPU call (EX_SOFTWARE): its service manager
restarts it; the job moves on."""


class DatabaseWasAway(Exception):
    """The look for stalled jobs waited on the database (a restart of PostgreSQL): the old
    heartbeats it found are likely the outage's, not dead workers'. Nothing was handed back."""


def too_many_tries(tries: int) -> str:
    return f"this job stopped {tries} GPU workers in a row, so it is not tried again"


async def rescue_stalled_jobs(
    app: procrastinate.App, store: FleetStore, stalled_s: float, max_tries: int
) -> int:
    """Hand back (or, after `max_tries`, fail) the GPU jobs of dead workers, and hand back
    their callback jobs (a callback is harmless to repeat); how many."""
    looked = time.monotonic()
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_s)
    if stalled and time.monotonic() - looked > stalled_s / 4:
        raise DatabaseWasAway("the look for stalled jobs waited on the database")
    rescued = 0
    for job in stalled:
        kind = KIND_OF_TASK.get(job.task_name)
        row_id = job.task_kwargs.get("row_id")
        gpu_job = (kind is not None or job.task_name == Task.RUN) and isinstance(row_id, int)
        if not gpu_job and job.queue != Queue.CALLBACKS:
            continue  # not ours
        tries = job.attempts + 1
        try:
            if not gpu_job:
                await app.job_manager.retry_job(job)
                rescued += 1
                continue
            if tries >= max_tries:
                await app.job_manager.finish_job(job, Status.FAILED, delete_job=False)
            else:
                await app.job_manager.retry_job(job)
        except procrastinate.exceptions.ConnectorException:  # another worker was faster
            continue
        rescued += 1
        assert isinstance(row_id, int)
        what = kind or "run"
        if tries >= max_tries:
            log.error("%s %s: %s", what, row_id, too_many_tries(tries))
            await _give_up(store, kind, row_id, too_many_tries(tries))
        else:
            log.warning(
                "%s %s: its worker died (try %d of %d), queued again",
                what,
                row_id,
                tries,
                max_tries,
            )
            await (store.requeue_run(row_id) if kind is None else store.requeue(kind, row_id))
    return rescued


async def _give_up(store: FleetStore, kind: JobKind | None, row_id: int, error: str) -> None:
    """Fail a tune or prompt (`kind`), or a run's open prompts (None), with `error`."""
    if kind is None:
        await store.fail_run(row_id, error)
        return
    column = "error" if kind == JobKind.TUNE else "user_error"
    await store.finish(kind, row_id, state=JobState.FAILED, **{column: error})


class Watchdog:
    """Exits the process when a watched job makes no progress for `hung_s` seconds."""

    def __init__(self, hung_s: float) -> None:
        self.hung_s = hung_s
        self._last = time.monotonic()
        self._watching = 0
        """Jobs under watch: a training, and a prompt it let through."""
        self._thread = threading.Thread(target=self._watch, name="gpu-watchdog", daemon=True)
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The worker is stopping (or a test's in-process worker is done): stop watching."""
        self._stopped.set()

    def beat(self) -> None:
        """The job moved (a step, a stage): any thread."""
        self._last = time.monotonic()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.beat()
        self._watching += 1
        try:
            yield
        finally:
            self._watching -= 1
            self.beat()  # the outer job's clock restarts here

    def _watch(self) -> None:
        while not self._stopped.wait(min(1.0, self.hung_s / 4)):
            idle = time.monotonic() - self._last
            if self._watching and idle > self.hung_s:
                log.critical(
                    "the GPU job made no progress for %.0f s (WORKER_HUNG_S): exiting so it"
                    " runs on another worker",
                    idle,
                )
                logging.shutdown()
                os._exit(HUNG_EXIT_STATUS)
