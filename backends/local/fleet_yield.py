"""A fleet training gives its GPU to waiting prompts between its steps, as on one machine.

After each training step the trainer's thread asks procrastinate for the next job of the
`gpu-prompts` and `gpu-runs` queues and runs it on this GPU before the next step, until none
waits or the training is owed its share (fair_share.py: a stream of prompts never starves a
training). A run (a pack's prompts) lets one waiting single prompt go after each of its own
(`serve_one_prompt`), as one machine's scheduler does.
The prompt jobs are taken under a procrastinate worker registration of their own, with its own
heartbeat, so a worker that dies mid-prompt has that prompt rescued like any other job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import procrastinate
from procrastinate.jobs import Job, Status

from backends.local.fair_share import TrainingTurns
from backends.local.fleet_jobs import Queue

log = logging.getLogger(__name__)
T = TypeVar("T")


class PromptsBetweenSteps:
    """Runs waiting prompt jobs from a training's thread; open() and close() on the loop."""

    def __init__(
        self,
        app: procrastinate.App,
        tasks: Mapping[str, Callable[[int], Awaitable[None]]],
        share: float,
        heartbeat_s: float,
    ) -> None:
        self.app = app
        self.tasks = tasks
        """Task name -> its body (a prompt's, a run's), for the jobs taken here."""
        self.share = share
        self.heartbeat_s = heartbeat_s
        self.served = 0
        """Prompts run between training steps so far (logs and tests)."""
        self._turns = TrainingTurns(share)
        self._worker_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._worker_id = await self.app.job_manager.register_worker()
        self._beat = asyncio.create_task(self._heartbeat())

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._worker_id is not None:
            await self.app.job_manager.unregister_worker(self._worker_id)

    def new_training(self) -> None:
        """A training starts: its share starts from nothing."""
        self._turns = TrainingTurns(self.share)

    def between_steps(self) -> None:
        """In the trainer's thread, after a step: the waiting prompts first, within the share."""
        if self._loop is None:
            return
        self._turns.step_done()
        try:
            while not self._turns.training_owed():
                job = self._on_loop(self._next())
                if job is None:
                    self._turns.no_prompt_waiting()
                    return
                started = time.monotonic()
                self._on_loop(self._run(job))
                self._turns.prompt_served(time.monotonic() - started)
        finally:
            self._turns.resume()

    async def serve_one_prompt(self) -> None:
        """On the loop, between a run's prompts: one waiting single prompt, if any."""
        if self._worker_id is None:
            return
        job = await self.app.job_manager.fetch_job([Queue.PROMPTS], self._worker_id)
        if job is not None:
            await self._run(job)

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _next(self) -> Job | None:
        assert self._worker_id is not None
        return await self.app.job_manager.fetch_job([Queue.PROMPTS, Queue.RUNS], self._worker_id)

    async def _run(self, job: Job) -> None:
        row_id = job.task_kwargs["row_id"]
        log.info("%s %s runs in between", job.task_name, row_id)
        status = Status.SUCCEEDED
        try:
            await self.tasks[job.task_name](int(row_id))  # type: ignore[arg-type]
        except Exception:  # the job is marked failed; the job it went between goes on
            log.exception("%s %s failed in between", job.task_name, row_id)
            status = Status.FAILED
        await self.app.job_manager.finish_job(job, status, delete_job=False)
        self.served += 1

    async def _heartbeat(self) -> None:
        assert self._worker_id is not None
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.app.job_manager.update_heartbeat(self._worker_id)
            except procrastinate.exceptions.ConnectorException:
                log.warning("could not send the between-steps heartbeat; trying again")
