"""`photoshoot-bot gpu-worker`: one process per GPU in fleet mode (issue #16).

It runs two procrastinate workers on the fleet's database: one on the GPU queues, one job at a
time (prompts before trainings, by priority; a training lets prompts run between its steps,
`fleet_yield.py`), and one on the `callbacks` queue, a few POSTs at a time, so callbacks never
wait behind a training. Beside them: the stalled-job rescue
(`fleet_faults.rescue_stalled_jobs`) every half WORKER_STALLED_S, and the hung-GPU watchdog.

SIGTERM or SIGINT: the running job stops at its next check and goes back in the queue, then the
process exits. A database that goes away (a restart of PostgreSQL) is waited for, not died of:
a job that lost it runs again once it answers, and so do the job loops it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import RetryStrategy

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import train
from backends.local.config import WorkerConfig
from backends.local.errors import ConfigError
from backends.local.file_cache import TuneFileCache
from backends.local.fleet_config import FleetConfig
from backends.local.fleet_faults import DatabaseWasAway, Watchdog, rescue_stalled_jobs
from backends.local.fleet_jobs import GPU_QUEUES, FleetStore, Queue, Task, database_away
from backends.local.fleet_progress import ProgressPublisher
from backends.local.fleet_yield import PromptsBetweenSteps
from backends.local.gpu_jobs import GpuJobs
from backends.local.library_logs import route_library_logs
from backends.local.migrate import check_migrated
from backends.local.pg_store import wait_until_reachable
from backends.local.queue import EngineFactory, build_engine
from backends.local.storage import open_storage

log = logging.getLogger(__name__)

CALLBACK_RETRY = RetryStrategy(max_attempts=12, wait=1, exponential_wait=2)
"""A callback POST that fails is tried again after about 2, 4, 8 ... s, 12 times (~2 hours)."""
CALLBACK_CONCURRENCY = 4

JobBody = Callable[..., Awaitable[None]]
"""A procrastinate task's function (`GpuJobs.run_prompt` ...), called with the job's arguments."""


def fleet_settings(environ: dict[str, str] | None = None) -> FleetConfig:
    """The fleet's settings; ConfigError unless both WORKER_DATABASE_URL and
    WORKER_STORAGE_URL are set."""
    fleet = FleetConfig.from_env(environ)
    if not fleet.enabled:
        raise ConfigError(
            "gpu-worker runs in fleet mode only: set WORKER_DATABASE_URL (PostgreSQL) and"
            " WORKER_STORAGE_URL (s3://bucket/prefix)"
        )
    return fleet


class GpuWorker:
    """One GPU's worker process: its store, storage, tune cache, engine and job loops."""

    def __init__(
        self,
        config: WorkerConfig,
        fleet: FleetConfig,
        *,
        engine_factory: EngineFactory | None = None,
        trainer: train.Trainer | None = None,
    ) -> None:
        assert fleet.database_url is not None
        self.config = config
        self.fleet = fleet
        self.store = FleetStore(fleet.database_url)
        storage = open_storage(config.files_dir, fleet)
        self.watchdog = Watchdog(fleet.hung_s)
        self.jobs = GpuJobs(
            config,
            self.store,
            storage,
            TuneFileCache(storage, config.data_dir / "tune-cache", fleet.tune_cache),
            self.watchdog,
            engine_factory or functools.partial(build_engine, config),
            trainer or functools.partial(train.train_tune, defaults=config.training),
        )
        self.name = f"gpu-{socket.gethostname()}-{os.getpid()}"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Take jobs until SIGTERM/SIGINT, or until `stop` is set where one is given (a GPU
        worker inside another program, as the worker API tests run one: no signal handlers)."""
        assert self.fleet.database_url is not None
        route_library_logs()
        await check_migrated(self.fleet.database_url)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        app = self.store.jobs
        app.task(name=Task.PROMPT, queue=Queue.PROMPTS)(self._outlasting(self.jobs.run_prompt))
        app.task(name=Task.TUNE, queue=Queue.TUNES)(self._outlasting(self.jobs.run_tune))
        app.task(name=Task.RUN, queue=Queue.RUNS)(self._outlasting(self.jobs.run_run))
        app.task(name=Task.CALLBACK, queue=Queue.CALLBACKS, retry=CALLBACK_RETRY)(
            self._outlasting(self.jobs.send_callback)
        )
        if self.config.eager_load:  # the default base model, before the first job
            await asyncio.to_thread(self.jobs.engine().models.get, SDXL_BASE_TUNE_ID)
        self.watchdog.start()
        between = PromptsBetweenSteps(
            app,
            {Task.PROMPT: self.jobs.run_prompt, Task.RUN: self.jobs.run_run},
            self.config.training_share,
            self.fleet.stalled_s / 5,
        )
        await between.open()
        self.jobs.prompts_between_steps = between
        stalled_s = self.fleet.stalled_s
        options = {
            "update_heartbeat_interval": stalled_s / 5,
            "stalled_worker_timeout": stalled_s,
            "install_signal_handlers": False,
            "shutdown_graceful_timeout": self.config.stop_grace_s,
        }
        gpu = functools.partial(
            app.run_worker_async, queues=GPU_QUEUES, concurrency=1, name=self.name, **options
        )
        callbacks = functools.partial(
            app.run_worker_async,
            queues=[Queue.CALLBACKS],
            concurrency=CALLBACK_CONCURRENCY,
            name=f"{self.name}-callbacks",
            **options,
        )
        loops = [
            asyncio.create_task(self._again_after_outages(gpu, "GPU jobs")),
            asyncio.create_task(self._again_after_outages(callbacks, "callbacks")),
            asyncio.create_task(self._rescue_loop()),
            asyncio.create_task(ProgressPublisher(self.jobs.progress, self.store).run()),
        ]
        log.info("gpu-worker %s started: model %s", self.name, self.config.sdxl_model)
        try:
            await _until_stopped(loops, stop)
        finally:
            self.jobs.stop()
            await _cancel_and_wait(loops)
            self.watchdog.stop()
            await between.close()
            await self.jobs.http.aclose()
            await self.store.close()
            log.info("gpu-worker %s stopped", self.name)

    def _outlasting(self, body: JobBody) -> JobBody:
        """`body` run again once the database answers when it went away mid-job (a restart
        of PostgreSQL), instead of ending the job in error with its row left `running`. A job
        body may run twice: it does its work once (gpu_jobs.py)."""

        @functools.wraps(body)
        async def run(**arguments: Any) -> None:
            while True:
                try:
                    return await body(**arguments)
                except Exception as exc:
                    if not database_away(exc):
                        raise
                    log.warning(
                        "%s %s: the database went away (%s): once it answers, again",
                        body.__name__, arguments, type(exc).__name__,
                    )  # fmt: skip
                    await wait_until_reachable(self.fleet.database_url or "")

        return run

    async def _again_after_outages(
        self, take_jobs: Callable[[], Awaitable[None]], what: str
    ) -> None:
        """procrastinate stops a worker whose heartbeat cannot be written (the database is
        away): start it again once the database answers, rather than exit (a process manager
        would restart the GPU worker again and again until then, its model reloaded each
        time). Cancelling this task stops it."""
        while True:
            try:
                await take_jobs()
            except Exception as exc:
                if not database_away(exc):
                    raise
            log.warning("taking %s stopped (the database went away?): once it answers, again", what)
            await asyncio.sleep(1)  # never a busy loop, whatever stopped it
            await wait_until_reachable(self.fleet.database_url or "")

    async def _rescue_loop(self) -> None:
        """Every half WORKER_STALLED_S, hand back the jobs of dead workers. After the database
        was away, every worker's heartbeat is old though none died: a look that waited on the
        database hands nothing back, and the next waits until the others have had
        WORKER_STALLED_S to beat again."""
        stalled_s = self.fleet.stalled_s
        while True:
            try:
                await rescue_stalled_jobs(
                    self.store.jobs, self.store, stalled_s, self.fleet.max_tries
                )
            except Exception as exc:
                if not (database_away(exc) or isinstance(exc, DatabaseWasAway)):
                    log.exception("could not look for stalled jobs")
                else:
                    log.warning("the database was away: no rescue until all had time to beat")
                    await wait_until_reachable(self.fleet.database_url or "")
                    await asyncio.sleep(stalled_s)
            await asyncio.sleep(stalled_s / 2)


async def _until_stopped(tasks: list[asyncio.Task[None]], stop: asyncio.Event | None) -> None:
    """Return once `stop` is set (None: on SIGTERM/SIGINT), or raise when a task ends on its
    own (a crash)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done:
        if task is not stopper:
            task.result()  # re-raise what ended it
            raise RuntimeError("a job loop ended on its own")


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for their ends. A task still running a second later is cancelled
    again: procrastinate's worker loses a cancel that comes while it registers itself (it then
    runs on, and a stop that waited for it would never end)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run_gpu_worker(
    config: WorkerConfig,
    *,
    engine_factory: EngineFactory | None = None,
    trainer: train.Trainer | None = None,
) -> None:
    """The command (blocking)."""
    worker = GpuWorker(config, fleet_settings(), engine_factory=engine_factory, trainer=trainer)
    asyncio.run(worker.run())
