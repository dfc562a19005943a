"""A running job's progress over the API, single worker and fleet alike: the training's
`progress` and `eta`, the prompt's `progress`. In the fleet the GPU worker that runs the job
is another process than the API replica that answers: it publishes to the row
(`fleet_progress.py`), and what a job left behind is not shown once it is not running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local.fleet_api import FleetWorker
from backends.local.params import MAX_STEPS
from backends.local.records import JobKind, JobState
from backends.local.training_recipe import TrainingDefaults
from tests.imagegen import jpeg_bytes
from tests.worker_fixtures import API_KEY, until
from tests.worker_modes import (
    Mode,
    WorkerMaker,
    empty_tables,
    fleet_config,
    fleet_database,
    worker_maker,
    worker_mode,
)

pytest.importorskip("torch")
__all__ = ["fleet_database", "worker_maker", "worker_mode"]  # fixtures: single and fleet

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHOTOS = [
    ("tune[images][]", (f"{i}.jpg", jpeg_bytes(1024, 1024, seed=i), "image/jpeg")) for i in range(4)
]


@pytest.mark.slow
async def test_a_running_training_and_prompt_show_their_progress_over_the_api(
    worker_maker: WorkerMaker,
) -> None:
    training = TrainingDefaults(resolution=64, rank=4)  # a CPU step takes tenths of a second
    async with (
        worker_maker.served(api_key=API_KEY, training=training) as (_, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
    ):
        fields = {"tune[title]": "long", "tune[name]": "man", "tune[steps]": "10000"}
        created = await http.post("/tunes", data=fields, files=PHOTOS)
        assert created.status_code == 201, created.text
        tune_id = created.json()["id"]

        async def tune_under_way() -> dict[str, Any] | None:
            tune = (await http.get(f"/tunes/{tune_id}")).json()
            return tune if tune["progress"] > 0 and tune["eta"] else None

        first = await until(tune_under_way, "the training's progress and ETA over the API")
        assert first["status"] == "processing" and first["progress"] < 1
        assert first["eta"] > first["started_training_at"]

        async def moved_on() -> bool:
            tune = (await http.get(f"/tunes/{tune_id}")).json()
            return bool(tune["progress"] > first["progress"])

        await until(moved_on, "the training's progress to grow")
        assert (await http.delete(f"/tunes/{tune_id}")).status_code == 200

        body = {"prompt": {"text": "portrait", "num_images": 1, "w": 64, "h": 64}}
        body["prompt"] |= {"steps": MAX_STEPS, "super_resolution": True, "inpaint_faces": False}
        prompt = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json=body)
        prompt_id = prompt.json()["id"]

        async def prompt_under_way() -> dict[str, Any] | None:
            answer = (await http.get(f"/prompts/{prompt_id}")).json()
            return answer if 0 < answer["progress"] < 1 else None

        running = await until(prompt_under_way, "the prompt's progress over the API")
        assert running["images"] == [] and running["queue_position"] == 0

        async def done() -> dict[str, Any] | None:
            answer = (await http.get(f"/prompts/{prompt_id}")).json()
            return answer if answer["images"] else None

        assert (await until(done, "the prompt's images"))["progress"] == 1.0


async def test_a_fleet_row_shows_no_progress_once_it_is_not_running(
    fleet_database: str, fake_s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    """A GPU worker that died mid-job left its last progress in the row: the job, queued again,
    shows none, and a late publication does not write over a row that is not running."""
    empty_tables(fleet_database)
    fleet = fleet_config(fleet_database, fake_s3, s3_bucket)
    worker = WorkerMaker(Mode.FLEET, tmp_path, fleet).build(api_key=API_KEY)  # no GPU worker
    assert isinstance(worker, FleetWorker)
    await worker.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(worker.app), base_url="http://worker", headers=AUTH
        ) as http:
            body = {"prompt": {"text": "portrait", "num_images": 1, "w": 64, "h": 64}}
            prompt_id = (await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json=body)).json()[
                "id"
            ]
            store = worker.store
            await store.update_prompt(prompt_id, state=JobState.RUNNING)
            await store.set_progress(JobKind.PROMPT, prompt_id, 0.4, None)
            assert (await http.get(f"/prompts/{prompt_id}")).json()["progress"] == 0.4

            await store.requeue(JobKind.PROMPT, prompt_id)  # as the rescue of a dead worker's
            assert (await http.get(f"/prompts/{prompt_id}")).json()["progress"] == 0.0
            await store.set_progress(JobKind.PROMPT, prompt_id, 0.6, None)
            row = await store.get_prompt(prompt_id)
            assert row is not None and row["state"] == JobState.QUEUED and row["progress"] == 0.4
    finally:
        await worker.stop()
