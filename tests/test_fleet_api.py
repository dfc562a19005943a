"""The fleet's API replica on its own (real PostgreSQL, the S3 fake, no GPU worker): what it
stores, defers, serves and refuses, and the real `gpu-worker` command on the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.config import WorkerConfig
from backends.local.errors import ConfigError
from backends.local.fleet_api import FleetWorker
from backends.local.fleet_config import FleetConfig
from backends.local.fleet_jobs import FleetStore
from backends.local.migrate import migrate
from backends.local.records import JobKind, JobState
from tests.fakes.s3 import FakeS3
from tests.fleet import (
    ROOT,
    Fleet,
    create_prompt,
    create_tune,
    pack_prompt_ids,
    photo_bytes,
    run_pack_on_new_tune,
)
from tests.worker_fixtures import until


@pytest.fixture
async def fleet(pg_url: str, fake_s3: FakeS3, s3_bucket: str, tmp_path: Path) -> Fleet:
    await migrate(pg_url)
    return Fleet(pg_url, fake_s3, s3_bucket, tmp_path)


@pytest.fixture
async def api(fleet: Fleet) -> AsyncIterator[str]:
    async with fleet.api(replicas=1) as (url,):
        yield url


def job_rows(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT task_name, (args->>'row_id')::bigint FROM procrastinate_jobs ORDER BY id"
        ).fetchall()
    return [(name, row_id) for name, row_id in rows]


async def test_a_prompt_is_queued_with_its_job_and_shown_in_line(fleet: Fleet, api: str) -> None:
    async with httpx.AsyncClient() as http:
        first = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "a", "")
        second = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "b", "")
        shown = (await http.get(f"{api}/prompts/{second}")).json()
        listed = (await http.get(f"{api}/tunes/{SDXL_BASE_TUNE_ID}/prompts")).json()
        health = (await http.get(f"{api}/healthz")).json()
    assert job_rows(fleet.database_url) == [
        ("fleet.run_prompt", first),
        ("fleet.run_prompt", second),
    ]
    assert shown["queue_position"] == 2 and shown["status"] == "queued"
    assert [p["id"] for p in listed] == [second, first]
    assert health["ok"] and health["queue"]["prompts"] == 2


async def test_a_refused_prompt_leaves_no_row_and_no_job(fleet: Fleet, api: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{api}/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            json={"prompt": {"text": "x", "num_images": 20}},
        )
        listed = (await http.get(f"{api}/tunes/{SDXL_BASE_TUNE_ID}/prompts")).json()
    assert response.status_code == 422 and "num_images" in response.json()["error"]
    assert listed == [] and job_rows(fleet.database_url) == []


async def test_training_photos_go_to_storage_and_are_served_from_it(fleet: Fleet, api: str) -> None:
    async with httpx.AsyncClient() as http:
        tune_id = await create_tune(http, api, "title", "")
        tune = (await http.get(f"{api}/tunes/{tune_id}")).json()
        [first, _] = tune["orig_images"]
        redirect = await http.get(first)
        photo = await http.get(first, follow_redirects=True)
        escape = await http.get(f"{api}/files/..%2F..%2Fetc/passwd")
        deleted = await http.delete(f"{api}/tunes/{tune_id}")
        gone = await http.get(first, follow_redirects=True)
    assert redirect.status_code == 307 and "Signature=" in redirect.headers["location"]
    assert photo.content == photo_bytes()
    assert escape.status_code == 404
    assert deleted.status_code == 200 and gone.status_code == 404  # removed from the bucket
    assert job_rows(fleet.database_url) == [("fleet.run_tune", tune_id)]


async def test_a_pack_on_a_new_tune_is_one_job_deferred_when_its_training_ends(
    fleet: Fleet, api: str
) -> None:
    async with httpx.AsyncClient() as http:
        wanted = await pack_prompt_ids(http, api, 2)
        made = await run_pack_on_new_tune(http, api, "headshots", wanted, "https://cb.test/run")
        tune_id = made["id"]
        waiting = [(await http.get(f"{api}/prompts/{p['id']}")).json() for p in made["prompts"]]
        assert job_rows(fleet.database_url) == [("fleet.run_tune", tune_id)]  # none per prompt
        assert [p["orig_prompt_id"] for p in waiting] == wanted
        assert {p["status"] for p in waiting} == {"queued"}
        async with gpu_side(fleet) as store:  # what a GPU worker commits when training ends
            assert await store.finish(JobKind.TUNE, tune_id, state=JobState.DONE)
        [(task, run_id)] = job_rows(fleet.database_url)[1:]
        assert task == "fleet.run_pack_run"
        async with gpu_side(fleet) as store:
            assert await store.records.run_prompt_ids(run_id) == [p["id"] for p in waiting]
        packs = await http.get(f"{api}/packs")
    assert packs.status_code == 200 and "corporate-headshots" in [p["slug"] for p in packs.json()]


async def test_a_pack_on_a_trained_tune_is_deferred_at_once_and_likes_add_up(
    fleet: Fleet, api: str
) -> None:
    async with httpx.AsyncClient() as http:
        tune_id = await create_tune(http, api, "trained", "")
        async with gpu_side(fleet) as store:
            await store.finish(JobKind.TUNE, tune_id, state=JobState.DONE)
        [first] = await pack_prompt_ids(http, api, 1)
        response = await http.post(
            f"{api}/p/corporate-headshots/tunes",
            json={"tune": {"tune_ids": [tune_id], "prompt_ids": [first]}},
        )
        assert response.status_code == 201, response.text
        [made] = response.json()["prompts"]
        for _ in range(2):  # a like is a state: twice is once
            assert (await http.post(f"{api}/prompts/{made['id']}/likes")).status_code == 201
        liked = (await http.get(f"{api}/p/corporate-headshots")).json()
        ranked = (await http.get(f"{api}/packs?order=likes")).json()
        await http.delete(f"{api}/prompts/{made['id']}/likes")
        unliked = (await http.get(f"{api}/p/corporate-headshots")).json()
    assert [task for task, _ in job_rows(fleet.database_url)] == [
        "fleet.run_tune",
        "fleet.run_pack_run",
    ]
    assert liked["likes"] == 1 and liked["prompts_per_class"]["man"][0]["likes"] == 1
    assert ranked[0]["slug"] == "corporate-headshots" and unliked["likes"] == 0


async def test_a_failed_training_fails_its_runs_prompts_and_calls_the_run_back_once(
    fleet: Fleet, api: str
) -> None:
    async with httpx.AsyncClient() as http:
        wanted = await pack_prompt_ids(http, api, 2)
        made = await run_pack_on_new_tune(http, api, "doomed", wanted, "https://cb.test/run")
        async with gpu_side(fleet) as store:
            await store.finish(JobKind.TUNE, made["id"], state=JobState.FAILED, error="no face")
        shown = [(await http.get(f"{api}/prompts/{p['id']}")).json() for p in made["prompts"]]
    assert {p["status"] for p in shown} == {"failed"}
    assert {p["user_error"] for p in shown} == {"the tune failed: no face"}
    callbacks = [job for job in fleet.jobs("fleet.send_callback") if job["kind"] == "run"]
    assert len(callbacks) == 1  # the run's prompts_callback, once for the whole run
    assert "fleet.run_pack_run" not in [task for task, _ in job_rows(fleet.database_url)]


@contextlib.asynccontextmanager
async def gpu_side(fleet: Fleet) -> AsyncIterator[FleetStore]:
    """The fleet store as a GPU worker opens it (to commit a training's end)."""
    store = FleetStore(fleet.database_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_an_unmigrated_database_is_refused_with_the_command(
    pg_server: str, tmp_path: Path
) -> None:
    from tests import pg

    with pg.throwaway_database(pg_server) as url:
        fleet = FleetConfig(database_url=url, storage_url="s3://b/p")
        worker = FleetWorker(WorkerConfig(data_dir=tmp_path), fleet)
        with pytest.raises(ConfigError, match="photoshoot-bot worker migrate"):
            await worker.start()


def test_gpu_worker_without_the_fleet_settings_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "gpu-worker"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "WORKER_DATABASE_URL" in done.stderr and "WORKER_STORAGE_URL" in done.stderr


@pytest.mark.slow
async def test_the_gpu_worker_command_makes_a_tiny_model_image(fleet: Fleet, api: str) -> None:
    log = (fleet.folder / "gpu-tiny.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - runs beside the test, never awaited on
        [sys.executable, "-m", "bot", "gpu-worker"],
        cwd=fleet.folder,
        env={
            **os.environ,
            **fleet.env,
            "PYTHONPATH": str(ROOT),
            "DATA_DIR": str(fleet.folder / "tiny"),
            "SDXL_MODEL": "tiny",
            "WORKER_DEVICE": "cpu",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            prompt = await create_prompt(http, api, SDXL_BASE_TUNE_ID, "a cat", "")

            async def done() -> dict[str, object] | None:
                shown = (await http.get(f"{api}/prompts/{prompt}")).json()
                return shown if shown["status"] in ("done", "failed") else None

            shown = await until(done, "the tiny model's image", 120)
            image = await http.get(shown["images"][0], follow_redirects=True)
    finally:
        process.terminate()
        status = await asyncio.to_thread(process.wait, 60)
    assert shown["status"] == "done", (fleet.folder / "gpu-tiny.log").read_text()[-3000:]
    assert image.content.startswith(b"\x89PNG")
    assert status == 0  # SIGTERM: a clean stop


def test_the_fleets_secrets_are_known_to_the_log_redaction() -> None:
    config = FleetConfig.from_env(
        {
            "WORKER_DATABASE_URL": "postgresql://u:p%40ss-word@db:5432/x",
            "WORKER_STORAGE_URL": "s3://b/p",
            "AWS_SECRET_ACCESS_KEY": "s3-secret-key",
        }
    )
    assert set(config.secrets()) == {
        "postgresql://u:p%40ss-word@db:5432/x",
        "p@ss-word",
        "s3-secret-key",
    }
    assert "p%40ss" not in repr(config) and "s3-secret" not in repr(config)
