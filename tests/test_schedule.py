"""The order the worker runs jobs in (`schedule.py`), on a real SQLite store: a run is kept
together, single prompts interleave with it one by one, prompts wait for their tune's
training, prompts go before trainings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.packs.records import SCHEMA, PackRecords
from backends.local.records import JobState
from backends.local.schedule import Scheduler
from backends.local.store import WorkerStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WorkerStore]:
    store = WorkerStore(tmp_path / "worker.sqlite3")
    await store.open()
    await store.db.executescript(SCHEMA)
    yield store
    await store.close()


async def tune(store: WorkerStore, *, trained: bool) -> int:
    row = await store.create_tune(
        {"title": "t", "name": "man", "token": "ohwx", "base_tune_id": 666678, "model_type": "pti"},
        [],
        None,
    )
    await store.set_tune_images(row["id"], ["tunes/x/0.jpg"])
    if trained:
        await store.update_tune(row["id"], state=JobState.DONE)
    return int(row["id"])


async def run(store: WorkerStore, tune_id: int, n: int) -> list[int]:
    """A run of `n` prompts on `tune_id`, as a pack makes one."""
    run_id = await PackRecords(store).create_run(tune_id, 101, None, None)
    rows = [await store.create_prompt(tune_id, {"run_id": run_id}, None) for _ in range(n)]
    return [r["id"] for r in rows]


async def single(store: WorkerStore) -> int:
    return int((await store.create_prompt(SDXL_BASE_TUNE_ID, {"text": "x"}, None))["id"])


async def drain(store: WorkerStore, scheduler: Scheduler) -> list[int | tuple[str, int]]:
    """Run everything in the scheduler's order (each job is marked done when picked)."""
    order: list[int | tuple[str, int]] = []
    while (job := await scheduler.next_job()) is not None:
        kind, row_id = job
        if kind == "tune":
            await store.update_tune(row_id, state=JobState.DONE)
            order.append(job)
        else:
            await store.update_prompt(row_id, state=JobState.DONE)
            order.append(row_id)
    return order


async def test_single_prompts_interleave_with_a_run_one_by_one(store: WorkerStore) -> None:
    pack = await run(store, await tune(store, trained=True), 4)
    singles = [await single(store), await single(store)]
    order = await drain(store, Scheduler(store))
    assert order == [pack[0], singles[0], pack[1], singles[1], pack[2], pack[3]]


async def test_a_run_in_progress_is_not_cut_by_an_older_run(store: WorkerStore) -> None:
    waiting_tune = await tune(store, trained=False)
    older = await run(store, waiting_tune, 2)  # waits for its tune's training
    newer = await run(store, await tune(store, trained=True), 3)
    scheduler = Scheduler(store)

    first = await scheduler.next_prompt()
    assert first == newer[0]  # the older run's tune is still training
    await store.update_prompt(first, state=JobState.RUNNING)
    await store.update_tune(waiting_tune, state=JobState.DONE)  # ... and now it is trained
    await store.update_prompt(first, state=JobState.DONE)
    assert await drain(store, scheduler) == [newer[1], newer[2], *older]


async def test_prompts_of_an_untrained_tune_wait_and_trainings_come_last(
    store: WorkerStore,
) -> None:
    training = await tune(store, trained=False)
    waiting = await run(store, training, 2)
    loose = await single(store)
    scheduler = Scheduler(store)
    assert await scheduler.next_job() == ("prompt", loose)
    await store.update_prompt(loose, state=JobState.DONE)
    assert await scheduler.next_job() == ("tune", training)  # its prompts cannot run yet
    assert await store.next_job() == ("tune", training)  # the store's own pick agrees
    await store.update_tune(training, state=JobState.DONE)
    assert await drain(store, scheduler) == waiting
