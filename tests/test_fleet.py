"""The worker fleet end to end (issue #16): real PostgreSQL and procrastinate, S3 through the
moto fake, GPU worker subprocesses with a sleeping GPU (`tests.fleet_stub_worker`), two API
replicas. Only the GPU is a stand-in: scheduling, rescue and storage are the real code."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.fleet_jobs import Task
from backends.local.migrate import migrate
from tests.fakes.s3 import FakeS3
from tests.fleet import Fleet, create_prompt, create_tune
from tests.worker_fixtures import CallbackSink, run_uvicorn, until

pytestmark = pytest.mark.slow


@pytest.fixture
async def fleet(pg_url: str, fake_s3: FakeS3, s3_bucket: str, tmp_path: Path) -> Iterator[Fleet]:
    await migrate(pg_url)
    fleet = Fleet(pg_url, fake_s3, s3_bucket, tmp_path, STUB_IMAGE_S="0.2", STUB_STEP_S="0.1")
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[CallbackSink, str]]:
    callbacks = CallbackSink()
    async with run_uvicorn(callbacks.app) as url:
        yield callbacks, f"{url}/hook"


def delivered(sink: CallbackSink) -> collections.Counter[tuple[str, int]]:
    return collections.Counter((kind, body[kind]["id"]) for body in sink.received for kind in body)


def row_state(url: str, table: str, row_id: int) -> tuple[str, str | None]:
    error = "error" if table == "tunes" else "user_error"
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT state, {error} FROM {table} WHERE id = %s", (row_id,))
        return row.fetchone()  # type: ignore[return-value]


async def test_thirty_prompts_and_three_tunes_run_once_each_with_one_callback(
    fleet: Fleet, sink: tuple[CallbackSink, str]
) -> None:
    callbacks, hook = sink
    for _ in range(3):
        fleet.start_worker()
    async with fleet.api(replicas=2) as apis, httpx.AsyncClient(timeout=30) as http:
        tunes = await asyncio.gather(
            *(create_tune(http, apis[i % 2], f"title-{i}", hook) for i in range(3))
        )
        prompts = await asyncio.gather(
            *(
                create_prompt(http, apis[i % 2], SDXL_BASE_TUNE_ID, f"photo {i}", hook)
                for i in range(30)
            )
        )

        async def all_called_back() -> bool:
            return len(callbacks.received) >= 33

        await until(all_called_back, "33 callbacks", 90)
        on_tunes = [
            await create_prompt(http, apis[i % 2], tune, "ohwx man", hook, images=2)
            for i, tune in enumerate(tunes)
        ]

        async def tuned_called_back() -> bool:
            return len(callbacks.received) >= 36

        await until(tuned_called_back, "the prompts on the trained tunes", 60)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, were there one
        first = callbacks.received[-1]["prompt"]
        image = await http.get(first["images"][0], follow_redirects=True)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert len(first["images"]) == 2
    expected = [("tune", t) for t in tunes] + [("prompt", p) for p in prompts + on_tunes]
    assert delivered(callbacks) == collections.Counter(expected)  # each exactly once
    logs = fleet.logs()
    for prompt in prompts + on_tunes:
        assert logs.count(f"STUB prompt {prompt} pid") == 1
    for tune in tunes:
        assert logs.count(f"STUB tune {tune} pid") == 1
    assert len({line.split(" pid ")[1] for line in logs.splitlines() if "STUB" in line}) == 3
    assert all(job["status"] == "succeeded" for job in fleet.jobs(Task.PROMPT))
    assert all(job["status"] == "succeeded" for job in fleet.jobs(Task.CALLBACK))
