"""`photoshoot-bot worker` in fleet mode (issue #16): the same Astria API, stateless, any number
of replicas. Rows live in PostgreSQL and are deferred as procrastinate jobs in the same
transaction (`FleetStore`); files live in S3-compatible storage (`/files/...` answers with a
presigned redirect); the GPU work happens in `photoshoot-bot gpu-worker` processes.

No GPU work runs here, so the runner the routes see (`QueueView`) only answers questions about
the queue: nothing is running in this process, no model is loaded, nothing to wake.
"""

from __future__ import annotations

import logging

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backends.local.app import create_app
from backends.local.config import WorkerConfig
from backends.local.fleet_config import FleetConfig
from backends.local.fleet_jobs import FleetStore
from backends.local.inspection import inspect_endpoint
from backends.local.library_logs import route_library_logs
from backends.local.migrate import check_migrated
from backends.local.records import JobKind, JobState, Row
from backends.local.storage import open_storage
from backends.local.store import now_iso

log = logging.getLogger(__name__)

DATABASE_AWAY = "the worker's database cannot be reached; try again in a moment"


async def _database_away(request: Request, exc: Exception) -> Response:
    """PostgreSQL is away (restarting, unreachable): a 503 the client may retry, one log line,
    no stack trace."""
    log.warning("%s %s: the database is away (%s)", request.method, request.url.path, exc)
    return JSONResponse({"error": DATABASE_AWAY}, status_code=503)


class QueueView:
    """What the routes ask a runner, answered from the shared store."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.running: tuple[JobKind, int] | None = None
        self.loaded_model: int | None = None
        self.binds = 0

    def wake(self) -> None:
        """Jobs were deferred with their rows: the GPU workers hear of them from PostgreSQL."""

    def cancel(self, kind: JobKind, row_id: int) -> None:
        """The GPU worker running it finds its row gone at its next check and stops there
        (`fleet_cancel.py`): nothing to tell from this process."""

    async def queue_position(self, prompt_id: int) -> int:
        ids = await self.store.queued_prompt_ids()
        return ids.index(prompt_id) + 1 if prompt_id in ids else 0

    def job_progress(self, kind: JobKind, row: Row) -> tuple[float | None, str | None]:
        """What the GPU worker running the job last published to its row (`fleet_progress`);
        a row that is not running has none (what a worker that died left is stale)."""
        if row["state"] != JobState.RUNNING:
            return None, None
        return row.get("progress"), row.get("eta")


class FleetWorker:
    """One API replica: the shared store and storage, the ASGI app, no GPU."""

    def __init__(self, config: WorkerConfig, fleet: FleetConfig) -> None:
        assert fleet.database_url is not None
        self.config = config
        self.fleet = fleet
        self.store = FleetStore(fleet.database_url)
        self.storage = open_storage(config.files_dir, fleet)
        self.runner = QueueView(self.store)
        self.inspect = inspect_endpoint(config.face_detector)
        self.app = create_app(self)  # type: ignore[arg-type]  # QueueView
        self.app.add_exception_handler(psycopg.OperationalError, _database_away)
        self.started_at: str | None = None

    async def start(self) -> None:
        assert self.fleet.database_url is not None
        route_library_logs()
        await check_migrated(self.fleet.database_url)
        await self.store.open()
        self.started_at = now_iso()
        log.info("worker API started in fleet mode: storage %s", self.fleet.storage_url)

    async def stop(self) -> None:
        await self.store.close()
        self.started_at = None
