"""The fleet's jobs on procrastinate (issue #16): their names, queues and priorities, and how a
row and its job are written together.

Every tune and prompt row has exactly one procrastinate job, deferred on the connection of the
transaction that inserts the row (`FleetStore`): both are committed, or neither. API replicas
defer by task name only; the GPU workers (`gpu_worker.py`) register the tasks themselves.

- `gpu-prompts`, `gpu-runs` and `gpu-tunes` queues: a GPU worker takes from all three,
  prompts and runs (priority 10, oldest first) before trainings (0): procrastinate fetches the
  highest priority first, so a prompt overtakes every queued training; a running training takes
  prompts and runs between its steps.
- A run (a pack's prompts on one tune, `packs/runs.py`) is one job, not one per prompt: one
  GPU worker makes all its prompts in a row, so the tune is fetched and bound once. Its prompt
  rows carry `run_id` and have no job of their own. A run on a tune still training is deferred
  when the training ends (`finish`), in that transaction; if the training fails, its prompts
  fail with it.
- `callbacks` queue: one job per callback POST, retried with backoff; GPU workers run it beside
  their GPU queue, so a long training does not hold a callback back.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import procrastinate
from procrastinate.exceptions import ConnectorException
from psycopg import AsyncConnection

from backends.local.packs.records import PackRecords
from backends.local.pg_store import DATABASE_AWAY, PgWorkerStore
from backends.local.records import JobKind, JobState, Row
from backends.local.store import now_iso


class Queue(StrEnum):
    PROMPTS = "gpu-prompts"
    RUNS = "gpu-runs"
    TUNES = "gpu-tunes"
    CALLBACKS = "callbacks"


GPU_QUEUES = [Queue.PROMPTS, Queue.RUNS, Queue.TUNES]
"""A GPU worker's queues: procrastinate takes the highest priority across them (prompts and
runs); a training asks the prompt and run queues between its steps (`fleet_yield.py`)."""


class Task(StrEnum):
    """procrastinate task names (stored in its jobs table: never rename one)."""

    PROMPT = "fleet.run_prompt"
    TUNE = "fleet.run_tune"
    RUN = "fleet.run_pack_run"
    CALLBACK = "fleet.send_callback"


class Priority(IntEnum):
    """Higher runs first."""

    TUNE = 0
    PROMPT = 10
    RUN = 10


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


async def defer_run(app: procrastinate.App, conn: AsyncConnection[Any], run_id: int) -> int:
    """Defer the job of a run (all its prompts, on one GPU) inside the transaction of `conn`."""
    deferrer = app.configure_task(
        name=Task.RUN, queue=Queue.RUNS, priority=Priority.RUN, connection=conn
    )
    return await deferrer.defer_async(row_id=run_id)


RUN_CALLBACK = "run"
"""The `kind` of a run's `prompts_callback` job (beside JobKind's `tune` and `prompt`)."""


async def defer_callback(
    app: procrastinate.App, conn: AsyncConnection[Any], kind: str, row_id: int
) -> int:
    """Defer the callback POST of a finished tune, prompt or run (`RUN_CALLBACK`) inside
    the transaction of `conn`."""
    deferrer = app.configure_task(name=Task.CALLBACK, queue=Queue.CALLBACKS, connection=conn)
    return await deferrer.defer_async(kind=str(kind), row_id=row_id)


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
        self.records = PackRecords(self)

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
        """A prompt with its job; a run's prompt without (its run has one, `run_queued`)."""
        async with self.transaction() as conn:
            row = await super().create_prompt(tune_id, params, origin)
            if params.get("run_id") is None:
                await defer_job(self.jobs, conn, JobKind.PROMPT, row["id"])
        return row

    async def run_queued(self, run_id: int, tune_id: int) -> None:
        """Defer the run's job now if its tune is trained; else its training's end will. The
        tune's row is locked first, so a training that ends meanwhile sees this run."""
        async with self.transaction() as conn:
            cursor = await conn.execute(
                "SELECT state FROM tunes WHERE id = %s FOR UPDATE", (tune_id,)
            )
            tune = await cursor.fetchone()
            if tune is not None and tune["state"] == JobState.DONE:
                await defer_run(self.jobs, conn, run_id)

    async def finish(self, kind: JobKind, row_id: int, **values: Any) -> bool:
        """Commit a job's end (its row's new state) and its callback job together; False when
        the row is gone (deleted while it ran). A tune's end also starts (or fails) the runs
        waiting for it; a run's last prompt also defers the run's `prompts_callback`."""
        async with self.transaction() as conn:
            before = await self.get_row(kind, row_id)
            if before is None:
                return False
            run_id = before["params"].get("run_id") if kind == JobKind.PROMPT else None
            if run_id is not None:  # one run's prompts end one at a time: no callback lost
                await conn.execute("SELECT id FROM pack_runs WHERE id = %s FOR UPDATE", (run_id,))
            await self.update_row(kind, row_id, **values)
            row = await self.get_row(kind, row_id)
            assert row is not None
            if callback_url(kind, row):
                await defer_callback(self.jobs, conn, kind, row_id)
            if kind == JobKind.TUNE:
                await self._tune_ended(conn, row)
            elif run_id is not None:
                await self._run_maybe_ended(conn, run_id)
        return True

    async def _tune_ended(self, conn: AsyncConnection[Any], tune: Row) -> None:
        """The runs that waited for this training: deferred now, or failed with it."""
        if tune["state"] == JobState.DONE:
            for run_id in await self.records.open_runs_of_tune(tune["id"]):
                await defer_run(self.jobs, conn, run_id)
        elif tune["state"] == JobState.FAILED:
            for prompt in await self.prompts_using_tune(tune["id"]):
                await self.finish(
                    JobKind.PROMPT,
                    prompt["id"],
                    state=JobState.FAILED,
                    user_error=f"the tune failed: {tune['error']}",
                    finished_at=now_iso(),
                )

    async def _run_maybe_ended(self, conn: AsyncConnection[Any], run_id: int) -> None:
        """The run's `prompts_callback` job, once, when its last prompt has ended."""
        run = await self.records.get_run(run_id)
        if run is None or not run["prompts_callback"]:
            return
        if await self.records.run_finished(run_id) and await self.records.claim_run_callback(
            run_id
        ):
            await defer_callback(self.jobs, conn, RUN_CALLBACK, run_id)

    async def requeue_run(self, run_id: int) -> None:
        """A run whose worker died shows its running prompt `queued` again."""
        for prompt_id in await self.records.open_run_prompt_ids(run_id):
            await self.requeue(JobKind.PROMPT, prompt_id)

    async def fail_run(self, run_id: int, error: str) -> None:
        """Fail the prompts a run has left (with their callbacks, and the run's)."""
        for prompt_id in await self.records.open_run_prompt_ids(run_id):
            await self.finish(
                JobKind.PROMPT,
                prompt_id,
                state=JobState.FAILED,
                user_error=error,
                finished_at=now_iso(),
            )

    async def set_progress(
        self, kind: JobKind, row_id: int, progress: float, eta: str | None
    ) -> None:
        """A running job's progress, as its GPU worker publishes it (`fleet_progress.py`); a
        row that ended or went meanwhile is left as it is."""
        await self._execute(
            f"UPDATE {kind.table} SET progress = ?, eta = ? WHERE id = ? AND state = ?",
            (progress, eta, row_id, JobState.RUNNING),
        )

    async def requeue(self, kind: JobKind, row_id: int) -> None:
        """A running row whose worker died shows `queued` again while its job waits."""
        await self._execute(
            f"UPDATE {kind.table} SET state = ? WHERE id = ? AND state = ?",
            (JobState.QUEUED, row_id, JobState.RUNNING),
        )
