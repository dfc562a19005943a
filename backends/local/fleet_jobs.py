"""The fleet's jobs on procrastinate (issue #16): their names, queues and priorities, and how a
row and its job are written together.

Every tune and prompt row has exactly one procrastinate job, deferred on the connection of the
transaction that inserts the row (`FleetStore`): both are committed, or neither. API replicas
defer by task name only; the GPU workers (`gpu_worker.py`) register the tasks themselves.

- `gpu-prompts` and `gpu-tunes` queues: a GPU worker takes from both, prompts (priority 10)
  before trainings (0): procrastinate fetches the highest priority first, so a prompt overtakes
  every queued training; a running training takes prompts from `gpu-prompts` between its steps.
- `callbacks` queue: one job per callback POST, retried with backoff; GPU workers run it beside
  their GPU queue, so a long training does not hold a callback back.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import procrastinate
from procrastinate.exceptions import ConnectorException
from psycopg import AsyncConnection

from backends.local.pg_store import DATABASE_AWAY, PgWorkerStore
from backends.local.records import JobKind, JobState, Row


class Queue(StrEnum):
    PROMPTS = "gpu-prompts"
    TUNES = "gpu-tunes"
    CALLBACKS = "callbacks"


GPU_QUEUES = [Queue.PROMPTS, Queue.TUNES]
"""A GPU worker's queues: procrastinate takes the highest priority across both (prompts); a
training asks the prompts queue alone between its steps (`fleet_yield.py`)."""


class Task(StrEnum):
    """procrastinate task names (stored in its jobs table: never rename one)."""

    PROMPT = "fleet.run_prompt"
    TUNE = "fleet.run_tune"
    CALLBACK = "fleet.send_callback"


class Priority(IntEnum):
    """Higher runs first."""

    TUNE = 0
    PROMPT = 10


TASK_OF = {JobKind.PROMPT: Task.PROMPT, JobKind.TUNE: Task.TUNE}
QUEUE_OF = {JobKind.PROMPT: Queue.PROMPTS, JobKind.TUNE: Queue.TUNES}
PRIORITY_OF = {JobKind.PROMPT: Priority.PROMPT, JobKind.TUNE: Priority.TUNE}


def fleet_app(conninfo: str, max_connections: int = 4) -> procrastinate.App:
    """A procrastinate app with a small pool of its own (its LISTEN connection cannot come from
    the store's autocommit pool); a defer still joins a store transaction through the
    `connection` it is given."""
    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=1, max_size=max_connections
        )
    )


async def defer_job(
    app: procrastinate.App, conn: AsyncConnection[Any], kind: JobKind, row_id: int
) -> int:
    """Defer the GPU job of a tune or prompt inside the transaction of `conn`."""
    deferrer = app.configure_task(
        name=TASK_OF[kind], queue=QUEUE_OF[kind], priority=PRIORITY_OF[kind], connection=conn
    )
    return await deferrer.defer_async(row_id=row_id)


async def defer_callback(
    app: procrastinate.App, conn: AsyncConnection[Any], kind: JobKind, row_id: int
) -> int:
    """Defer the callback POST of a finished tune or prompt inside the transaction of `conn`."""
    deferrer = app.configure_task(name=Task.CALLBACK, queue=Queue.CALLBACKS, connection=conn)
    return await deferrer.defer_async(kind=kind.value, row_id=row_id)


def callback_url(kind: JobKind, row: Row) -> str | None:
    return row["callback"] if kind == JobKind.TUNE else row["params"].get("callback")


def database_away(exc: BaseException) -> bool:
    """`exc` says the database cannot be reached (ours, or procrastinate's wrapping of it)."""
    if isinstance(exc, ConnectorException):
        exc = exc.__cause__ or exc
    return isinstance(exc, DATABASE_AWAY)


class FleetStore(PgWorkerStore):
    """The store of fleet mode: creating a queued tune or prompt defers its job with it."""

    def __init__(self, conninfo: str, *, max_connections: int = 10) -> None:
        super().__init__(conninfo, max_connections=max_connections)
        self.jobs = fleet_app(conninfo)

    async def open(self) -> None:
        await super().open()
        await self.jobs.open_async()

    async def close(self) -> None:
        await self.jobs.close_async()
        await super().close()

    async def create_tune(self, fields: Row, images: list[str], origin: str | None) -> Row:
        async with self.transaction() as conn:
            row = await super().create_tune(fields, images, origin)
            if row["state"] == JobState.QUEUED and row["images"]:
                await defer_job(self.jobs, conn, JobKind.TUNE, row["id"])
        return row

    async def create_prompt(self, tune_id: int, params: Row, origin: str | None) -> Row:
        async with self.transaction() as conn:
            row = await super().create_prompt(tune_id, params, origin)
            await defer_job(self.jobs, conn, JobKind.PROMPT, row["id"])
        return row

    async def finish(self, kind: JobKind, row_id: int, **values: Any) -> bool:
        """Commit a job's end (its row's new state) and its callback job together; False when
        the row is gone (deleted while it ran)."""
        async with self.transaction() as conn:
            get = self.get_tune if kind == JobKind.TUNE else self.get_prompt
            if await get(row_id) is None:
                return False
            update = self.update_tune if kind == JobKind.TUNE else self.update_prompt
            await update(row_id, **values)
            row = await get(row_id)
            assert row is not None
            if callback_url(kind, row):
                await defer_callback(self.jobs, conn, kind, row_id)
        return True

    async def requeue(self, kind: JobKind, row_id: int) -> None:
        """A running row whose worker died shows `queued` again while its job waits."""
        await self._execute(
            f"UPDATE {kind.table} SET state = ? WHERE id = ? AND state = ?",
            (JobState.QUEUED, row_id, JobState.RUNNING),
        )
