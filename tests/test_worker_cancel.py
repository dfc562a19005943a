"""Cancel really cancels: a deleted prompt or tune stops at its next check and frees the GPU.

The worker runs for real under uvicorn (tiny SDXL on the CPU), as one machine and as the fleet
(`tests/worker_modes.py`: the API replica, a GPU worker beside it); DELETE is the bot's
`/cancel`. A job cut short logs that it stopped because it was deleted (never "interrupted"),
leaves no files on disk or in the bucket, and the next job runs. The face stage (the tiny model
draws no faces) and the model load are driven directly, on one machine.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import Worker
from backends.local.errors import Aborted
from backends.local.generate import StagePlan
from backends.local.models import ModelCache, load_model
from backends.local.params import MAX_STEPS, parse_prompt
from backends.local.records import JobKind
from backends.local.training_recipe import TrainingDefaults
from tests.imagegen import jpeg_bytes
from tests.worker_fixtures import API_KEY, face_image, until, worker_config
from tests.worker_modes import (
    Mode,
    ServedWorker,
    WorkerMaker,
    job_progress,
    stored_files,
    worker_maker,
    worker_mode,
)

pytest.importorskip("torch")
__all__ = ["worker_maker", "worker_mode"]  # fixtures: the API tests run single and fleet

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JOB_LOGGERS = ("backends.local.queue", "backends.local.gpu_jobs")
"""Where a job's end is logged: the single worker's runner, the fleet's GPU worker."""

STOPPED_ON_DELETE = {
    (Mode.SINGLE, JobKind.PROMPT): "deleted, stopped",
    (Mode.SINGLE, JobKind.TUNE): "deleted, training stopped",
    (Mode.FLEET, JobKind.PROMPT): "deleted while running, stopped",
    (Mode.FLEET, JobKind.TUNE): "deleted while running, stopped",
}
"""The line a job logs when it stops because its row was deleted (never "interrupted")."""


def stopped_line(mode: Mode, kind: JobKind, row_id: int) -> str:
    return f"{kind} {row_id}: {STOPPED_ON_DELETE[mode, kind]}"


async def files_under(worker: ServedWorker, folder: str) -> list[str]:
    """The stored files in `folder` (`prompts/7`): on disk, or in the fleet's bucket."""
    return [key for key in await stored_files(worker) if f"/{folder}/" in f"/{key}"]


def model_folder(worker: ServedWorker, maker: WorkerMaker, tune_id: int) -> Path:
    """Where a tune's model is written while it trains: the single worker's tunes folder, or
    the training folder of the fleet's GPU worker (uploaded to the bucket when done)."""
    if maker.gpu is not None:
        return maker.gpu.config.data_dir / "training" / str(tune_id)
    return worker.config.tunes_dir / str(tune_id)


def capture_job_logs(caplog: pytest.LogCaptureFixture) -> None:
    for logger in JOB_LOGGERS:
        caplog.set_level(logging.INFO, logger=logger)


def prompt_body(**overrides: Any) -> dict[str, Any]:
    prompt = {"text": "portrait", "num_images": 1, "w": 64, "h": 64, "steps": 3}
    prompt.update({"super_resolution": False, "inpaint_faces": False, **overrides})
    return {"prompt": prompt}


async def test_deleting_a_running_prompt_stops_it_before_its_hires_pass(
    worker_maker: WorkerMaker, caplog: pytest.LogCaptureFixture
) -> None:
    capture_job_logs(caplog)
    async with (
        worker_maker.served(api_key=API_KEY) as (worker, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
    ):
        long = prompt_body(steps=MAX_STEPS, super_resolution=True, inpaint_faces=True)
        created = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json=long)
        prompt_id = created.json()["id"]
        key = f"prompt {prompt_id}"

        async def denoising() -> bool:
            progress = job_progress(worker, worker_maker, JobKind.PROMPT, prompt_id)
            return bool(progress)

        await until(denoising, "the prompt's first denoising steps")
        assert (await http.delete(f"/prompts/{prompt_id}")).status_code == 200

        async def let_go() -> bool:
            return job_progress(worker, worker_maker, JobKind.PROMPT, prompt_id) is None

        await until(let_go, "the runner to let go of the prompt")

        assert stopped_line(worker_maker.mode, JobKind.PROMPT, prompt_id) in caplog.text
        assert f"{key}: interrupted" not in caplog.text
        assert await files_under(worker, f"prompts/{prompt_id}") == []
        assert (await http.get(f"/prompts/{prompt_id}")).status_code == 404

        # the GPU is free: the next prompt runs to the end
        second = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json=prompt_body())
        second_id = second.json()["id"]

        async def finished() -> bool:
            return bool((await http.get(f"/prompts/{second_id}")).json()["images"])

        await until(finished, "the next prompt")


@pytest.mark.slow
async def test_deleting_a_running_tune_stops_the_training_and_the_next_tune_trains(
    worker_maker: WorkerMaker, caplog: pytest.LogCaptureFixture
) -> None:
    capture_job_logs(caplog)
    training = TrainingDefaults(resolution=64, rank=4)  # a CPU step takes tenths of a second
    photos = [
        ("tune[images][]", (f"{i}.jpg", jpeg_bytes(1024, 1024, seed=i), "image/jpeg"))
        for i in range(4)
    ]

    async with (
        worker_maker.served(api_key=API_KEY, training=training) as (worker, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as http,
    ):

        async def create(title: str, steps: int) -> int:
            fields = {"tune[title]": title, "tune[name]": "man", "tune[steps]": str(steps)}
            answer = await http.post("/tunes", data=fields, files=photos)
            assert answer.status_code == 201, answer.text
            return int(answer.json()["id"])

        long_id = await create("long", 10_000)
        short_id = await create("short", 2)

        async def training_steps() -> bool:
            return bool(job_progress(worker, worker_maker, JobKind.TUNE, long_id))

        await until(training_steps, "the long training's first steps")
        assert (await http.delete(f"/tunes/{long_id}")).status_code == 200

        async def short_trained() -> bool:
            return bool((await http.get(f"/tunes/{short_id}")).json()["trained_at"])

        await until(short_trained, "the next tune to train")
        assert stopped_line(worker_maker.mode, JobKind.TUNE, long_id) in caplog.text
        assert f"tune {long_id}: interrupted" not in caplog.text
        assert not model_folder(worker, worker_maker, long_id).exists()
        assert await files_under(worker, f"tunes/{long_id}") == []
        assert await files_under(worker, f"lora/{long_id}") == []  # the fleet's model, checkpoint


def test_the_face_redraw_checks_at_every_denoising_step(tmp_path: Path) -> None:
    """A face redraw is one img2img call: a cancel must reach it at its next step, not after."""
    model = load_model("tiny", "cpu")
    params = parse_prompt(
        {
            "text": "portrait",
            "steps": 20,
            "seed": 3,
            "super_resolution": True,
            "inpaint_faces": True,
        },
        native_size=model.native_size,
        max_side=2048,
        random_seed=0,
    )
    worker = Worker(worker_config(tmp_path))
    engine = worker.runner.engine()
    reports: list[float] = []

    def report(fraction: float) -> None:
        reports.append(fraction)
        if len(reports) == 2:  # the check before the face, then its first denoising step
            raise Aborted("prompt deleted")

    plan = StagePlan([("faces", 1.0)], report, threading.Event())
    with pytest.raises(Aborted):
        engine.redraw_faces(model, params, face_image(160), params.seed, plan)
    assert len(reports) == 2


def test_a_model_load_gives_up_between_its_sub_steps_and_leaves_nothing_resident() -> None:
    calls: list[int] = []

    def stop() -> None:
        calls.append(1)
        raise Aborted("the worker is stopping")

    cache = ModelCache({SDXL_BASE_TUNE_ID: "tiny"}, "cpu")
    with pytest.raises(Aborted):
        cache.get(SDXL_BASE_TUNE_ID, check=stop)
    assert calls == [1] and cache._loaded is None
