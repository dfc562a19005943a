"""The worker API tests run against both ways of serving the API (issue #16): one machine and
the fleet. A test that takes `worker` (or `worker_maker`, for a trainer or settings of its
own) runs once per mode:

- `single`: `Worker`, SQLite, files on disk, jobs run in this process.
- `fleet`: `FleetWorker`, the stateless API replica `photoshoot-bot worker` serves when
  WORKER_DATABASE_URL and WORKER_STORAGE_URL are set, on a migrated PostgreSQL database and a
  bucket of its own on the S3 fake; a real `GpuWorker` (procrastinate, the
  tiny model) takes its jobs in this process, so a test's trainer and log capture reach it.

PostgreSQL is the real server of tests/pg.py: without one the fleet params are skipped, and
fail in CI. A module's fleet tests share one migrated database, emptied before each test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from backends.astria import AstriaClient
from backends.local import Worker
from backends.local.file_cache import tune_key
from backends.local.fleet_api import FleetWorker
from backends.local.fleet_config import FleetConfig
from backends.local.gpu_worker import GpuWorker
from backends.local.migrate import JOB_TABLES, migrate
from backends.local.pg_store import WORKER_TABLES
from backends.local.records import JobKind
from backends.local.storage import LocalStorage, S3Storage
from backends.local.train import Trainer
from tests import pg
from tests.fakes.s3 import FakeS3
from tests.worker_fixtures import run_uvicorn, worker_config

API_URL = "http://worker"
"""Where the tests' clients reach the app in-process (httpx's ASGI transport)."""

ServedWorker = Worker | FleetWorker
"""What the API tests hold: the object whose `app`, `store`, `config` and `storage` they use."""


class Mode(StrEnum):
    SINGLE = "single"
    FLEET = "fleet"


class WorkerMaker:
    """Builds the worker of a test's mode on `data_dir`; `fleet` is set in fleet mode."""

    def __init__(self, mode: Mode, data_dir: Path, fleet: FleetConfig | None) -> None:
        self.mode = mode
        self.data_dir = data_dir
        self.fleet = fleet
        self.gpu: GpuWorker | None = None
        """In fleet mode, the GPU worker beside the API while `started`/`served` run."""

    def build(self, *, trainer: Trainer | None = None, **overrides: Any) -> ServedWorker:
        """The API side, not started (in fleet mode the trainer goes to `started`'s GPU
        worker)."""
        config = worker_config(self.data_dir / "api", **overrides)
        if self.fleet is None:
            return Worker(config, trainer=trainer)
        return FleetWorker(config, self.fleet)

    @contextlib.asynccontextmanager
    async def started(
        self, *, trainer: Trainer | None = None, **overrides: Any
    ) -> AsyncIterator[ServedWorker]:
        """A started worker (and in fleet mode a GPU worker beside it), stopped on the way
        out."""
        worker = self.build(trainer=trainer, **overrides)
        await worker.start()
        try:
            async with self._gpu_beside(trainer, overrides):
                yield worker
        finally:
            await worker.stop()

    @contextlib.asynccontextmanager
    async def served(
        self, *, trainer: Trainer | None = None, **overrides: Any
    ) -> AsyncIterator[tuple[ServedWorker, str]]:
        """The worker under real uvicorn, as `photoshoot-bot worker` serves it (its lifespan
        starts and stops it), with a GPU worker beside it in fleet mode; yields it and its URL."""
        worker = self.build(trainer=trainer, **overrides)
        async with run_uvicorn(worker.app) as url, self._gpu_beside(trainer, overrides):
            yield worker, url

    @contextlib.asynccontextmanager
    async def _gpu_beside(
        self, trainer: Trainer | None, overrides: dict[str, Any]
    ) -> AsyncIterator[None]:
        if self.fleet is None:  # one machine: the worker runs its jobs itself
            yield
            return
        gpu_config = worker_config(self.data_dir / "gpu", **overrides)
        async with gpu_worker_running(GpuWorker(gpu_config, self.fleet, trainer=trainer)) as gpu:
            self.gpu = gpu
            try:
                yield
            finally:
                self.gpu = None


@contextlib.asynccontextmanager
async def gpu_worker_running(gpu: GpuWorker) -> AsyncIterator[GpuWorker]:
    """`gpu` taking jobs in this event loop until the block ends (then it stops as on
    SIGTERM); a GPU worker that crashes fails the test."""
    stop = asyncio.Event()
    task = asyncio.create_task(gpu.run(stop))
    try:
        yield gpu
    finally:
        stop.set()
        await task


def fleet_config(database_url: str, s3: FakeS3, bucket: str) -> FleetConfig:
    return FleetConfig.from_env(
        {
            **s3.env,
            "WORKER_DATABASE_URL": database_url,
            "WORKER_STORAGE_URL": f"s3://{bucket}/fleet",
        }
    )


@pytest.fixture(params=list(Mode))
def worker_mode(request: pytest.FixtureRequest) -> Mode:
    """single, then fleet: every worker API test runs against both."""
    return Mode(request.param)


@pytest.fixture(scope="module")
def fleet_database(pg_server: str) -> Iterator[str]:
    """One migrated database for a module's fleet tests (creating and migrating one costs more
    than most of these tests); `worker_maker` empties it before each test."""
    with pg.throwaway_database(pg_server) as url:
        with ThreadPoolExecutor(1) as thread:  # it may be asked for inside a test's event loop
            thread.submit(asyncio.run, migrate(url)).result()
        yield url


def empty_tables(database_url: str) -> None:
    """Every row gone and the ids back at their start, as in a database just migrated."""
    tables = ", ".join((*WORKER_TABLES, *JOB_TABLES))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
async def worker_maker(
    worker_mode: Mode, request: pytest.FixtureRequest, tmp_path: Path
) -> WorkerMaker:
    fleet = None
    if worker_mode == Mode.FLEET:  # PostgreSQL and S3 only where the test needs them
        database_url = request.getfixturevalue("fleet_database")
        empty_tables(database_url)
        fleet = fleet_config(
            database_url, request.getfixturevalue("fake_s3"), request.getfixturevalue("s3_bucket")
        )
    return WorkerMaker(worker_mode, tmp_path / "worker", fleet)


@pytest.fixture
async def worker(worker_maker: WorkerMaker) -> AsyncIterator[ServedWorker]:
    """A started worker of the test's mode, with the default settings."""
    async with worker_maker.started() as running:
        yield running


class AppOrNetwork(httpx.AsyncBaseTransport):
    """Requests to API_URL go to the app in-process (as `client`, a (host, port) pair); any
    other (the fleet's presigned S3 links) over the network, as a real client would."""

    def __init__(self, app: Any, client: tuple[str, int]) -> None:
        self.app = httpx.ASGITransport(app=app, client=client)
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        in_process = request.url.host == httpx.URL(API_URL).host
        transport = self.app if in_process else self.network
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self.app.aclose()
        await self.network.aclose()


def client_for(
    worker: ServedWorker, key: str | None = None, host: str = "127.0.0.1"
) -> AstriaClient:
    """The bot's own Astria client on `worker`'s app, calling as `host`."""
    transport = AppOrNetwork(worker.app, (host, 40000))
    return AstriaClient(key, API_URL, transport=transport, max_read_retries=0)


def raw_client(
    worker: ServedWorker, key: str | None = None, host: str = "127.0.0.1"
) -> httpx.AsyncClient:
    """A plain HTTP client on `worker`'s app (bodies the Astria client would never send)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = AppOrNetwork(worker.app, (host, 40000))
    return httpx.AsyncClient(transport=transport, base_url=API_URL, headers=headers)


async def row_counts(worker: ServedWorker) -> tuple[int, int]:
    """How many tunes and prompts the worker's store holds (one query of the store contract's
    SQL, which both stores run)."""
    counts = []
    for table in ("tunes", "prompts"):
        [row] = await worker.store._all(f"SELECT COUNT(*) AS n FROM {table}", ())
        counts.append(int(row["n"]))
    return counts[0], counts[1]


def job_progress(
    worker: ServedWorker, maker: WorkerMaker, kind: JobKind, row_id: int
) -> float | None:
    """How far a job is (0..1) where it runs, None when nothing runs it: the single worker's
    runner, or the fleet's GPU worker beside the API (whose API shows what it published)."""
    runner_progress = maker.gpu.jobs.progress if maker.gpu is not None else worker.runner.progress
    return runner_progress.fraction.get((kind, row_id))


async def stored_files(worker: ServedWorker) -> list[str]:
    """The keys of every file the worker stored: its files folder, or its bucket's prefix."""
    storage = worker.storage
    if isinstance(storage, LocalStorage):
        root = worker.config.files_dir
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    assert isinstance(storage, S3Storage)
    answer = await asyncio.to_thread(
        storage.client.list_objects_v2, Bucket=storage.bucket, Prefix=f"{storage.prefix}/"
    )
    return [item["Key"] for item in answer.get("Contents", [])]


async def write_tune_file(worker: ServedWorker, tune_id: int, name: str, data: bytes) -> None:
    """Put a file beside a trained tune's artefacts, where the worker keeps them."""
    if isinstance(worker, Worker):
        (worker.config.tunes_dir / str(tune_id) / name).write_bytes(data)
    else:
        await worker.storage.put(tune_key(tune_id, name), data)


async def read_tune_file(worker: ServedWorker, tune_id: int, name: str) -> bytes:
    if isinstance(worker, Worker):
        return (worker.config.tunes_dir / str(tune_id) / name).read_bytes()
    return await worker.storage.read(tune_key(tune_id, name))
