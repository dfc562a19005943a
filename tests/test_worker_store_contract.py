"""One contract for the worker store, run against both implementations with real databases:
SQLite (single-machine mode) and PostgreSQL (the fleet, on the server tests/pg.py finds)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backends.local.config import FIRST_TUNE_ID
from backends.local.errors import ConfigError
from backends.local.packs.records import SCHEMA as PACK_SCHEMA
from backends.local.packs.records import PackRecords
from backends.local.pg_store import PgWorkerStore, apply_schema
from backends.local.records import JobKind, JobState
from backends.local.store import JobStore, WorkerStore

TUNE = {"title": "t", "name": "man", "token": "ohwx", "base_tune_id": 666678, "model_type": "pti"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], JobStore]]:
    """Makes open stores on one database (several: the fleet's processes share one)."""
    if request.param == "sqlite":
        make: Callable[[], JobStore] = lambda: WorkerStore(tmp_path / "db.sqlite3")  # noqa: E731
    else:
        url = request.getfixturevalue("pg_url")
        await apply_schema(url)
        make = lambda: PgWorkerStore(url)  # noqa: E731
    opened: list[JobStore] = []

    def factory() -> JobStore:
        store = make()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Callable[[], JobStore]) -> JobStore:
    store = open_store()
    await store.open()
    return store


async def new_tune(store: JobStore, **fields: object) -> int:
    row = await store.create_tune({**TUNE, **fields}, ["tunes/x/0.jpg"], "https://origin")
    return int(row["id"])


async def test_a_tune_round_trips(store: JobStore) -> None:
    row = await store.create_tune(
        {**TUNE, "steps": 500, "face_crop": True, "callback": "https://cb"}, [], None
    )
    assert row["id"] >= FIRST_TUNE_ID  # never collides with a base model id
    assert (row["title"], row["steps"], row["callback"], row["state"]) == (
        "t",
        500,
        "https://cb",
        JobState.QUEUED,
    )
    assert bool(row["face_crop"]) is True
    assert row["images"] == [] and row["error"] is None and not row["callback_sent"]
    assert ISO.match(row["created_at"]) and ISO.match(row["updated_at"])
    await store.set_tune_images(row["id"], ["tunes/1/0.jpg", "tunes/1/1.jpg"])
    await store.update_tune(row["id"], state=JobState.FAILED, error="bad photos")
    again = await store.get_tune(row["id"])
    assert again is not None
    assert again["images"] == ["tunes/1/0.jpg", "tunes/1/1.jpg"]
    assert (again["state"], again["error"]) == (JobState.FAILED, "bad photos")
    assert await store.get_tune(row["id"] + 1000) is None


async def test_find_by_title_gives_the_oldest(store: JobStore) -> None:
    first = await new_tune(store, title="same")
    await new_tune(store, title="same")
    found = await store.find_tune_by_title("same")
    assert found is not None and found["id"] == first
    assert await store.find_tune_by_title("other") is None


async def test_pages_are_newest_first(store: JobStore) -> None:
    ids = [await new_tune(store) for _ in range(5)]
    page = await store.list_tunes(limit=2, offset=0, before_id=None)
    assert [r["id"] for r in page] == ids[:2:-1]
    page = await store.list_tunes(limit=2, offset=1, before_id=None)
    assert [r["id"] for r in page] == [ids[3], ids[2]]
    page = await store.list_tunes(limit=10, offset=0, before_id=ids[2])
    assert [r["id"] for r in page] == [ids[1], ids[0]]


async def test_deletes_say_whether_there_was_a_row(store: JobStore) -> None:
    tune_id = await new_tune(store)
    prompt = await store.create_prompt(tune_id, {"text": "x"}, None)
    assert await store.delete_prompt(prompt["id"]) is True
    assert await store.delete_prompt(prompt["id"]) is False
    assert await store.delete_tune(tune_id) is True
    assert await store.delete_tune(tune_id) is False
    assert await store.get_tune(tune_id) is None


async def test_a_prompt_round_trips_with_nested_params(store: JobStore) -> None:
    tune_id = await new_tune(store)
    params = {"text": "ohwx man", "num_images": 2, "extra": {"seed": 5, "tags": ["a", "b"]}}
    row = await store.create_prompt(tune_id, params, "https://origin")
    assert row["id"] >= FIRST_TUNE_ID
    assert (row["tune_id"], row["params"], row["state"], row["images"]) == (
        tune_id,
        params,
        JobState.QUEUED,
        [],
    )
    await store.update_prompt(
        row["id"], state=JobState.DONE, images=["prompts/1/0.png"], finished_at="2026-01-01"
    )
    done = await store.get_prompt(row["id"])
    assert done is not None
    assert (done["state"], done["images"], done["finished_at"]) == (
        JobState.DONE,
        ["prompts/1/0.png"],
        "2026-01-01",
    )
    other = await new_tune(store)
    await store.create_prompt(other, {"text": "y"}, None)
    listed = await store.list_prompts(tune_id, limit=10, offset=0, before_id=None)
    assert [r["id"] for r in listed] == [row["id"]]


async def test_prompts_using_a_tune_are_the_queued_ones_naming_it(store: JobStore) -> None:
    tune_id = await new_tune(store)
    by_url = await store.create_prompt(tune_id, {"text": "x"}, None)
    by_tag = await store.create_prompt(666678, {"text": "x", "lora_tune_id": tune_id}, None)
    ran = await store.create_prompt(tune_id, {"text": "x"}, None)
    await store.update_prompt(ran["id"], state=JobState.RUNNING)
    await store.create_prompt(666678, {"text": "unrelated"}, None)
    using = await store.prompts_using_tune(tune_id)
    assert sorted(r["id"] for r in using) == [by_url["id"], by_tag["id"]]


async def test_the_queue_runs_prompts_first_then_ready_tunes_oldest_first(store: JobStore) -> None:
    assert await store.next_job() is None
    waiting = await store.create_tune(TUNE, [], None)  # photos not written yet: not ready
    assert await store.next_job() is None
    ready = await new_tune(store)
    assert await store.next_job() == (JobKind.TUNE, ready)
    await store.set_tune_images(waiting["id"], ["tunes/w/0.jpg"])
    assert await store.next_job() == (JobKind.TUNE, waiting["id"])
    # Prompts on the base model (a prompt on a tune still to be trained waits for it: packs).
    first = await store.create_prompt(666678, {"text": "1"}, None)
    second = await store.create_prompt(666678, {"text": "2"}, None)
    assert await store.next_job() == (JobKind.PROMPT, first["id"])
    assert await store.next_prompt() == first["id"]
    assert await store.queued_prompt_ids() == [first["id"], second["id"]]
    assert await store.queue_depth() == {"prompts": 2, "tunes": 2}
    await store.update_prompt(first["id"], state=JobState.RUNNING)
    assert await store.next_job() == (JobKind.PROMPT, second["id"])
    assert await store.queue_depth() == {"prompts": 1, "tunes": 2}


async def test_interrupted_jobs_go_back_in_the_queue(store: JobStore) -> None:
    tune_id = await new_tune(store)
    prompt = await store.create_prompt(tune_id, {"text": "x"}, None)
    await store.update_tune(tune_id, state=JobState.RUNNING)
    await store.update_prompt(prompt["id"], state=JobState.RUNNING)
    assert await store.requeue_interrupted() == 2
    assert await store.requeue_interrupted() == 0
    assert (await store.get_prompt(prompt["id"]) or {})["state"] == JobState.QUEUED
    assert (await store.get_tune(tune_id) or {})["state"] == JobState.QUEUED


async def test_a_callback_is_claimed_once_and_unsent_ones_are_listed(store: JobStore) -> None:
    with_cb = await new_tune(store, callback="https://cb/t")
    without_cb = await new_tune(store)
    queued_cb = await new_tune(store, callback="https://cb/q")
    prompt_cb = await store.create_prompt(with_cb, {"text": "x", "callback": "https://cb/p"}, None)
    prompt_plain = await store.create_prompt(with_cb, {"text": "x"}, None)
    for tune_id in (with_cb, without_cb):
        await store.update_tune(tune_id, state=JobState.DONE)
    for prompt in (prompt_cb, prompt_plain):
        await store.update_prompt(prompt["id"], state=JobState.FAILED)
    assert sorted(await store.unsent_callbacks()) == sorted(
        [(JobKind.TUNE, with_cb), (JobKind.PROMPT, prompt_cb["id"])]
    )
    assert queued_cb not in [row_id for _, row_id in await store.unsent_callbacks()]
    assert await store.claim_callback(JobKind.TUNE, with_cb) is True
    assert await store.claim_callback(JobKind.TUNE, with_cb) is False
    assert await store.unsent_callbacks() == [(JobKind.PROMPT, prompt_cb["id"])]


async def test_stores_on_one_database_share_rows_and_claim_a_callback_once(
    open_store: Callable[[], JobStore],
) -> None:
    one, two = open_store(), open_store()
    await one.open()
    await two.open()
    tune_id = await new_tune(one, callback="https://cb")
    await two.update_tune(tune_id, state=JobState.DONE)
    assert (await one.get_tune(tune_id) or {})["state"] == JobState.DONE
    claims = await asyncio.gather(
        *(store.claim_callback(JobKind.TUNE, tune_id) for store in (one, two, one, two))
    )
    assert sorted(claims) == [False, False, False, True]


async def test_postgresql_refuses_to_open_an_unmigrated_database(pg_url: str) -> None:
    store = PgWorkerStore(pg_url)
    with pytest.raises(ConfigError, match="photoshoot-bot worker migrate"):
        await store.open()
    await apply_schema(pg_url)
    await apply_schema(pg_url)  # idempotent
    await store.open()
    await store.close()


async def test_postgresql_unreachable_is_a_clear_config_error() -> None:
    store = PgWorkerStore("postgresql://nobody:secret-pw@127.0.0.1:9/none?connect_timeout=2")
    with pytest.raises(ConfigError, match="cannot reach WORKER_DATABASE_URL") as caught:
        await store.open()
    assert "secret-pw" not in str(caught.value)


async def with_pack_tables(store: JobStore) -> PackRecords:
    """The run and like tables: the single runner creates them at start, `migrate` in PG."""
    if isinstance(store, WorkerStore):
        await store.db.executescript(PACK_SCHEMA)
    return PackRecords(store)


async def test_a_run_knows_its_prompts_and_when_they_have_all_ended(store: JobStore) -> None:
    records = await with_pack_tables(store)
    tune_id = await new_tune(store)
    run_id = await records.create_run(tune_id, 101, "https://cb/run", "https://origin")
    other_run = await records.create_run(tune_id, None, None, None)
    ids = [
        (await store.create_prompt(tune_id, {"text": str(i), "run_id": run_id}, None))["id"]
        for i in range(3)
    ]
    await store.create_prompt(tune_id, {"text": "alone"}, None)
    await store.create_prompt(tune_id, {"text": "other", "run_id": other_run}, None)
    run = await records.get_run(run_id)
    assert run is not None
    assert (run["tune_id"], run["pack_id"], run["prompts_callback"], run["origin"]) == (
        tune_id,
        101,
        "https://cb/run",
        "https://origin",
    )
    assert await records.run_prompt_ids(run_id) == ids
    assert await records.open_runs_of_tune(tune_id) == [run_id, other_run]
    await store.update_prompt(ids[0], state=JobState.DONE)
    await store.update_prompt(ids[1], state=JobState.RUNNING)
    assert await records.open_run_prompt_ids(run_id) == ids[1:]
    assert not await records.run_finished(run_id)
    await store.update_prompt(ids[1], state=JobState.FAILED)
    await store.update_prompt(ids[2], state=JobState.DONE)
    assert await records.run_finished(run_id) and await records.open_run_prompt_ids(run_id) == []
    assert await records.open_runs_of_tune(tune_id) == [other_run]
    assert await records.runs_with_unsent_callbacks() == [run_id]
    assert await records.claim_run_callback(run_id) is True
    assert await records.claim_run_callback(run_id) is False
    assert await records.runs_with_unsent_callbacks() == []


async def test_a_like_is_a_state_counted_per_pack_prompt(store: JobStore) -> None:
    records = await with_pack_tables(store)
    made = [
        await store.create_prompt(666678, {"text": "x", "pack_id": 1, "orig_prompt_id": orig}, None)
        for orig in (10_000_001, 10_000_001, 10_000_002)
    ]
    plain = await store.create_prompt(666678, {"text": "mine"}, None)
    for prompt in [*made, made[0], plain]:  # liking twice is liking once
        await records.like(prompt)
    assert await records.likes_per_pack_prompt() == {10_000_001: 2, 10_000_002: 1}
    await records.unlike(made[1]["id"])
    await records.unlike(made[1]["id"])
    assert await records.likes_per_pack_prompt() == {10_000_001: 1, 10_000_002: 1}
