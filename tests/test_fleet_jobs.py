"""Fleet mode's rows and jobs on a real PostgreSQL: a tune or prompt and its procrastinate job
are committed together or not at all, prompts outrank trainings, and a job's end is committed
with its callback job."""

from __future__ import annotations

from collections.abc import AsyncIterator

import procrastinate
import psycopg
import pytest

from backends.local.fleet_faults import rescue_stalled_jobs, too_many_tries
from backends.local.fleet_jobs import FleetStore, Priority, Queue, Task
from backends.local.migrate import migrate
from backends.local.records import JobKind, JobState

TUNE_FIELDS = {
    "title": "t",
    "name": "man",
    "token": "ohwx",
    "base_tune_id": 1504944,
    "model_type": "lora",
}


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[FleetStore]:
    await migrate(pg_url)
    fleet = FleetStore(pg_url)
    await fleet.open()
    try:
        yield fleet
    finally:
        await fleet.close()


def job_columns(url: str, columns: str) -> list[tuple[object, ...]]:
    """`columns` of procrastinate's jobs, oldest first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT {columns} FROM procrastinate_jobs ORDER BY id").fetchall()
    return [tuple(row) for row in rows]


def jobs(url: str) -> list[tuple[object, ...]]:
    return job_columns(url, "task_name, queue_name, priority, args")


async def test_a_prompt_and_a_tune_are_deferred_with_their_rows(
    store: FleetStore, pg_url: str
) -> None:
    tune = await store.create_tune(TUNE_FIELDS, ["tunes/a/0.jpg"], origin=None)
    prompt = await store.create_prompt(1504944, {"text": "a photo"}, origin=None)
    assert jobs(pg_url) == [
        (Task.TUNE, Queue.TUNES, Priority.TUNE, {"row_id": tune["id"]}),
        (Task.PROMPT, Queue.PROMPTS, Priority.PROMPT, {"row_id": prompt["id"]}),
    ]
    assert Priority.PROMPT > Priority.TUNE  # procrastinate takes the highest first


async def test_a_tune_without_photos_yet_has_no_job(store: FleetStore, pg_url: str) -> None:
    await store.create_tune(TUNE_FIELDS, [], origin=None)
    assert jobs(pg_url) == []


async def test_a_failed_defer_takes_the_row_back(store: FleetStore, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # procrastinate cannot defer now
        conn.execute("ALTER TABLE procrastinate_jobs RENAME TO procrastinate_jobs_away")
    with pytest.raises(procrastinate.exceptions.ConnectorException):
        await store.create_prompt(1504944, {"text": "a photo"}, origin=None)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE procrastinate_jobs_away RENAME TO procrastinate_jobs")
    assert await store.list_prompts(1504944, limit=10, offset=0, before_id=None) == []


async def test_a_finish_commits_the_state_with_its_callback_job(
    store: FleetStore, pg_url: str
) -> None:
    hooked = await store.create_prompt(1504944, {"callback": "http://h/cb"}, origin=None)
    silent = await store.create_prompt(1504944, {}, origin=None)
    assert await store.finish(JobKind.PROMPT, hooked["id"], state=JobState.DONE)
    assert await store.finish(JobKind.PROMPT, silent["id"], state=JobState.DONE)
    await store.delete_prompt(silent["id"])
    assert not await store.finish(JobKind.PROMPT, silent["id"], state=JobState.DONE)
    callbacks = [job for job in jobs(pg_url) if job[0] == Task.CALLBACK]
    assert callbacks == [
        (Task.CALLBACK, Queue.CALLBACKS, 0, {"kind": "prompt", "row_id": hooked["id"]})
    ]
    row = await store.get_prompt(hooked["id"])
    assert row is not None and row["state"] == JobState.DONE


async def taken_by_a_dead_worker(store: FleetStore, url: str, queue: Queue) -> None:
    """A worker takes the next job of `queue`, then dies: its heartbeat stops (a minute ago)."""
    worker_id = await store.jobs.job_manager.register_worker()
    assert await store.jobs.job_manager.fetch_job([queue], worker_id) is not None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute'"
        )


def statuses(url: str) -> list[tuple[object, ...]]:
    return job_columns(url, "task_name, status, attempts")


async def test_dead_workers_jobs_are_handed_back_then_failed_after_max_tries(
    store: FleetStore, pg_url: str
) -> None:
    prompt = await store.create_prompt(1504944, {"callback": "http://h/cb"}, origin=None)
    await store.update_prompt(prompt["id"], state=JobState.RUNNING)
    await taken_by_a_dead_worker(store, pg_url, Queue.PROMPTS)
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 1
    assert statuses(pg_url) == [(Task.PROMPT, "todo", 1)]
    row = await store.get_prompt(prompt["id"])
    assert row is not None and row["state"] == JobState.QUEUED  # shown waiting again
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 0

    await taken_by_a_dead_worker(store, pg_url, Queue.PROMPTS)  # the second worker it kills
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 1
    row = await store.get_prompt(prompt["id"])
    assert row is not None and row["state"] == JobState.FAILED
    assert row["user_error"] == too_many_tries(2)
    assert statuses(pg_url) == [(Task.PROMPT, "failed", 2), (Task.CALLBACK, "todo", 0)]

    await taken_by_a_dead_worker(store, pg_url, Queue.CALLBACKS)  # its callback's worker too
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 1
    assert statuses(pg_url)[1] == (Task.CALLBACK, "todo", 1)


async def test_a_live_workers_job_is_left_alone(store: FleetStore, pg_url: str) -> None:
    await store.create_prompt(1504944, {}, origin=None)
    worker_id = await store.jobs.job_manager.register_worker()
    assert await store.jobs.job_manager.fetch_job([Queue.PROMPTS], worker_id) is not None
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 0
    assert statuses(pg_url) == [(Task.PROMPT, "doing", 0)]


async def test_a_dead_workers_run_is_handed_back_whole_then_failed_after_max_tries(
    store: FleetStore, pg_url: str
) -> None:
    tune = await store.create_tune(TUNE_FIELDS, ["tunes/a/0.jpg"], origin=None)
    await store.finish(JobKind.TUNE, tune["id"], state=JobState.DONE)
    run_id = await store.records.create_run(tune["id"], 101, "http://h/run", None)
    prompts = [
        await store.create_prompt(tune["id"], {"text": str(i), "run_id": run_id}, origin=None)
        for i in range(3)
    ]
    await store.run_queued(run_id, tune["id"])
    await store.finish(JobKind.PROMPT, prompts[0]["id"], state=JobState.DONE)
    await store.update_prompt(prompts[1]["id"], state=JobState.RUNNING)
    await taken_by_a_dead_worker(store, pg_url, Queue.RUNS)
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 1
    assert (Task.RUN, "todo", 1) in statuses(pg_url)
    states = [(await store.get_prompt(p["id"]) or {})["state"] for p in prompts]
    assert states == [JobState.DONE, JobState.QUEUED, JobState.QUEUED]

    await taken_by_a_dead_worker(store, pg_url, Queue.RUNS)
    assert await rescue_stalled_jobs(store.jobs, store, stalled_s=30, max_tries=2) == 1
    ended = [await store.get_prompt(p["id"]) or {} for p in prompts]
    assert [row["state"] for row in ended] == [JobState.DONE, JobState.FAILED, JobState.FAILED]
    assert ended[2]["user_error"] == too_many_tries(2)
    run_callbacks = [job for job in jobs(pg_url) if job[0] == Task.CALLBACK]
    assert run_callbacks == [
        (Task.CALLBACK, Queue.CALLBACKS, 0, {"kind": "run", "row_id": run_id})
    ]  # once, for the whole run, when its last prompt ended
