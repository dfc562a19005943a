"""A restart of PostgreSQL mid-run is survived (issue #16): with jobs queued and running, two
API replicas and two GPU workers up, the fleet's database goes away for a few seconds and
comes back. Every job still completes exactly once with one callback, the API answers a clear
503 while the database is away and 200 again once it is back, and no GPU worker dies.

The server is a private cluster of this test's own (tests/pg.py `private_cluster`): the shared
test server is never restarted. The GPU workers are the real `gpu-worker` with a sleeping GPU
(tests/fleet_stub_worker.py)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.fleet_jobs import Task
from backends.local.migrate import migrate
from tests import pg
from tests.fakes.s3 import FakeS3
from tests.fakes.threaded_server import free_port
from tests.fleet import Fleet, create_prompt, create_tune
from tests.worker_fixtures import CallbackSink, run_uvicorn, until

pytestmark = pytest.mark.slow

PROMPTS = 6
OUTAGE_S = 1.0


@pytest.fixture
def cluster() -> Iterator[pg.PrivateCluster]:
    with pg.private_cluster(free_port()) as running:
        yield running


def called_back(sink: CallbackSink) -> collections.Counter[tuple[str, int]]:
    return collections.Counter((kind, body[kind]["id"]) for body in sink.received for kind in body)


def states(url: str) -> dict[tuple[str, int], str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT 'tune', id, state FROM tunes UNION ALL SELECT 'prompt', id, state FROM prompts"
        ).fetchall()
    return {(kind, row_id): state for kind, row_id, state in rows}


async def test_a_postgresql_restart_mid_run_loses_no_job_and_repeats_none(
    cluster: pg.PrivateCluster, fake_s3: FakeS3, s3_bucket: str, tmp_path: Path
) -> None:
    await migrate(cluster.url)
    fleet = Fleet(
        cluster.url, fake_s3, s3_bucket, tmp_path,
        STUB_IMAGE_S="0.3", STUB_STEP_S="0.2", STUB_STEPS="15",
    )  # fmt: skip
    sink = CallbackSink()
    workers = [fleet.start_worker() for _ in range(2)]
    try:
        async with (
            run_uvicorn(sink.app) as sink_url,
            fleet.api(replicas=2) as apis,
            httpx.AsyncClient(timeout=30) as http,
        ):
            hook = f"{sink_url}/hook"
            tune = await create_tune(http, apis[0], "restart", hook)
            prompts = [
                await create_prompt(http, apis[i % 2], SDXL_BASE_TUNE_ID, f"p{i}", hook, images=2)
                for i in range(PROMPTS)
            ]

            async def running() -> bool:  # a training and a prompt are on the GPUs
                logs = fleet.logs()
                return f"STUB tune {tune} pid" in logs and "STUB prompt" in logs

            await until(running, "the jobs to start", 60)
            await asyncio.to_thread(cluster.stop)
            away = await http.get(f"{apis[1]}/prompts/{prompts[-1]}")  # after POOL_TIMEOUT_S
            await asyncio.sleep(OUTAGE_S)  # the outage outlasts the pool's wait
            await asyncio.to_thread(cluster.start)

            async def answers() -> httpx.Response | None:
                response = await http.get(f"{apis[0]}/prompts/{prompts[-1]}")
                return response if response.status_code == 200 else None

            await until(answers, "the API to answer again", 30)

            async def all_called_back() -> bool:
                return len(called_back(sink)) >= PROMPTS + 1  # every job, repeats aside

            await until(all_called_back, "every job's callback", 120)
            await asyncio.sleep(1.5)  # time for a duplicate to show up, were there one
            alive = [worker.poll() for worker in workers]
    finally:
        fleet.stop()
    assert away.status_code == 503, away.text
    assert "database" in away.json()["error"]
    expected = [("tune", tune), *(("prompt", p) for p in prompts)]
    # Callbacks are at least once: one whose POST went out just before the database did,
    # so that its bookkeeping failed, is sent again (the bot shows a repeat once). Every job
    # is called back, and nothing that was not asked for.
    assert set(called_back(sink)) == set(expected), fleet.logs()[-3000:]
    assert sum(called_back(sink).values()) <= len(expected) + 2, called_back(sink)
    assert set(states(cluster.url).values()) == {"done"}
    assert alive == [None, None], fleet.logs()[-3000:]  # no GPU worker died on the outage
    assert "its worker died" not in fleet.logs()  # nor was one taken for dead
    assert all(job["status"] == "succeeded" for job in fleet.jobs(Task.CALLBACK))
