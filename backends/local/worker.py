"""The worker as one object: its store, its job runner (and through it the model), its ASGI app.

`Worker` wires them and owns their lifecycle; `serve` runs one under uvicorn (the CLI's
`photoshoot-bot worker`). The HTTP face (app.py) is built here from the worker and sees it only
through `http.Served`, so it never imports this module.
"""

from __future__ import annotations

import asyncio
import logging

from backends.local.app import create_app
from backends.local.config import WorkerConfig
from backends.local.inspection import inspect_endpoint
from backends.local.library_logs import route_library_logs
from backends.local.queue import EngineFactory, JobRunner
from backends.local.storage import LocalStorage
from backends.local.store import WorkerStore, now_iso
from backends.local.sweep import RetentionTimer, remove_orphans
from backends.local.train import Trainer
from backends.server_limits import raise_open_files_limit, server_options

log = logging.getLogger(__name__)


class Worker:
    """Owns the store, the job runner (and through it the model) and the ASGI app."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        engine_factory: EngineFactory | None = None,
        trainer: Trainer | None = None,
    ) -> None:
        self.config = config
        self.store = WorkerStore(config.db_path)
        self.runner = JobRunner(self.store, config, engine_factory, trainer)
        self.storage = LocalStorage(config.files_dir)
        self.inspect = inspect_endpoint(config.face_detector)
        """POST /images/inspect: built here, as it needs cv2, which the routes never import."""
        self.app = create_app(self)
        self.retention = RetentionTimer(self.store, config)
        """WORKER_RETENTION_DAYS' daily sweep (sweep.py); idle when unset."""
        self.started_at: str | None = None
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the store, requeue interrupted jobs, start the runner. Idempotent."""
        async with self._lock:
            if self._started:
                return
            for folder in (self.config.data_dir, self.config.files_dir, self.config.tunes_dir):
                folder.mkdir(parents=True, exist_ok=True)
            route_library_logs()
            await self.store.open()
            await remove_orphans(self.store, self.config)
            if self.config.eager_load:
                await asyncio.to_thread(self.runner.load_model_now)
            await self.runner.start()
            self.retention.start()
            self.started_at = now_iso()
            self._started = True
            log.info(
                "worker started: data %s, model %s, auth %s",
                self.config.data_dir,
                self.config.sdxl_model,
                "bearer key" if self.config.api_key else "loopback clients only",
            )

    async def stop(self) -> None:
        """Stop taking work, abort the running job at its next step (it stays queued), close."""
        async with self._lock:
            if not self._started:
                return
            await self.retention.stop()
            await self.runner.stop()
            await self.store.close()
            self._started = False
            log.info("worker stopped")


def create_worker(config: WorkerConfig) -> Worker:
    return Worker(config)


def serve(host: str, port: int, config: WorkerConfig) -> None:
    """Run the worker under uvicorn until interrupted (blocking); used by the CLI."""
    import uvicorn

    from backends.local.fleet_config import FleetConfig

    fleet = FleetConfig.from_env()
    if fleet.enabled:  # the fleet's stateless API (fleet_api.py): no GPU work in this process
        from backends.local.fleet_api import FleetWorker

        worker: Worker | FleetWorker = FleetWorker(config, fleet)
    else:
        worker = create_worker(config)
    if config.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("no WORKER_API_KEY: only loopback clients will be served on %s", host)
    # log_config=None: uvicorn's records go through the process's handlers (the bot's: one
    # line per event, secrets redacted, JSON when asked) instead of uvicorn's own format.
    # SIGTERM: uvicorn stops accepting, finishes open requests, then the lifespan stops the
    # worker (the running job stays queued); then it re-raises the signal, so the exit status
    # says "terminated by SIGTERM", which service managers count as a clean stop.
    # Limits against slow and flooding clients: backends/server_limits.py.
    raise_open_files_limit()
    uvicorn.run(
        worker.app, host=host, port=port, log_level="info", log_config=None, **server_options()
    )
