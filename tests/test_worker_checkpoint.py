"""A training resumes from its last checkpoint, not from step 0, and cannot starve.

In process: the loop stopped after step k continues at the checkpoint and ends where an
uninterrupted run ends. Over HTTP: the worker stops mid-training, a new worker resumes the
tune at the checkpoint's step and finishes it (the checkpoint file then goes). The fair share
is checked on its own clock.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from PIL import Image

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import Worker, fleet_checkpoint
from backends.local.accel import Accel
from backends.local.checkpoint import CHECKPOINT_FILE
from backends.local.errors import Aborted
from backends.local.fair_share import TrainingTurns
from backends.local.storage import LocalStorage
from backends.local.training_recipe import TrainingDefaults, TrainJob
from tests.imagegen import jpeg_bytes
from tests.worker_fixtures import API_KEY, run_uvicorn, until, worker_config

torch = pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")

from backends.local.models import load_model  # noqa: E402
from backends.local.train import run_training  # noqa: E402

SIZE = 64  # the tiny model divides by 8 and has three UNet levels
SETTINGS = TrainingDefaults(steps=8, rank=4, resolution=SIZE, checkpoint_steps=3, pivot=0.5)


def job(out_dir: Path) -> TrainJob:
    return TrainJob(
        tune_id=7,
        token="ohwx",
        class_word="man",
        base_tune_id=SDXL_BASE_TUNE_ID,
        base_model="tiny",
        images=[Path("a.jpg"), Path("b.jpg")],
        steps=None,
        face_crop=None,
        out_dir=out_dir,
        device="cpu",
    )


def crops() -> list[Image.Image]:
    return [Image.new("RGB", (SIZE, SIZE), c) for c in ((200, 30, 30), (30, 200, 30))]


def train(
    out_dir: Path, between_steps: object, checkpointed: object = lambda path: None
) -> dict[str, torch.Tensor]:
    model = load_model("tiny", "cpu", Accel.off())
    trained = run_training(
        model,
        job(out_dir),
        SETTINGS,
        crops(),
        between_steps,  # type: ignore[arg-type]
        checkpointed=checkpointed,  # type: ignore[arg-type]
    )
    return {**trained.lora, **trained.embeddings}


@pytest.mark.slow
def test_a_stopped_training_resumes_at_its_checkpoint_and_ends_as_if_never_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    whole = train(tmp_path / "whole", lambda fraction: None)

    def stop_after_step_5(fraction: float) -> None:
        if fraction >= 5 / 8:
            raise Aborted("the worker is stopping")

    folder = tmp_path / "stopped"
    with pytest.raises(Aborted):
        train(folder, stop_after_step_5)
    assert (folder / CHECKPOINT_FILE).is_file()

    reports: list[float] = []
    resumed = train(folder, reports.append)
    assert "tune 7: resuming at step 3 of 8" in caplog.text
    assert reports[0] == 3 / 8 and min(reports) == 3 / 8 and reports[-1] == 1.0
    assert len(reports) == 1 + 8 - 3  # the resume point, then steps 4..8 only
    assert whole.keys() == resumed.keys()
    for key, value in whole.items():
        assert torch.allclose(value, resumed[key], atol=1e-6, rtol=0), key


@pytest.mark.slow
async def test_a_checkpoint_copied_through_storage_resumes_the_training_in_another_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fleet's way (fleet_checkpoint.py): machine A's checkpoints go to storage, machine B
    fetches the last one into its own fresh folder and ends as an uninterrupted run would."""
    caplog.set_level(logging.INFO)
    whole = await asyncio.to_thread(train, tmp_path / "whole", lambda fraction: None)
    storage = LocalStorage(tmp_path / "bucket")

    def stop_after_step_5(fraction: float) -> None:
        if fraction >= 5 / 8:
            raise Aborted("machine A dies")

    uploader = fleet_checkpoint.Uploader(storage, 7)
    with pytest.raises(Aborted):
        await asyncio.to_thread(train, tmp_path / "machine-a", stop_after_step_5, uploader)
    machine_b = tmp_path / "machine-b"
    assert await fleet_checkpoint.fetch(storage, 7, machine_b)
    resumed = await asyncio.to_thread(train, machine_b, lambda fraction: None)
    assert "tune 7: resuming at step 3 of 8" in caplog.text
    for key, value in whole.items():
        assert torch.allclose(value, resumed[key], atol=1e-6, rtol=0), key
    await fleet_checkpoint.drop(storage, 7)
    assert not await fleet_checkpoint.fetch(storage, 7, tmp_path / "machine-c")


@pytest.mark.slow
async def test_a_worker_restarted_mid_training_continues_from_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backends.local.train")
    settings = TrainingDefaults(resolution=SIZE, rank=4, checkpoint_steps=4)
    data = tmp_path / "worker"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    photos = [
        ("tune[images][]", (f"{i}.jpg", jpeg_bytes(1024, 1024, seed=i), "image/jpeg"))
        for i in range(4)
    ]
    fields = {"tune[title]": "me", "tune[name]": "man", "tune[steps]": "40"}

    first = Worker(worker_config(data, api_key=API_KEY, training=settings))
    async with run_uvicorn(first.app) as url, httpx.AsyncClient(base_url=url, headers=auth) as http:
        tune_id = (await http.post("/tunes", data=fields, files=photos)).json()["id"]

        async def a_quarter_done() -> bool:
            return (await http.get(f"/tunes/{tune_id}")).json()["progress"] >= 0.25

        await until(a_quarter_done, "a quarter of the training")
    saved = torch.load(data / "tunes" / str(tune_id) / CHECKPOINT_FILE, weights_only=True)
    step = saved["step"]
    assert step >= 8 and step % 4 == 0

    second = Worker(worker_config(data, api_key=API_KEY, training=settings))
    async with (
        run_uvicorn(second.app) as url,
        httpx.AsyncClient(base_url=url, headers=auth) as http,
    ):

        async def trained() -> bool:
            return bool((await http.get(f"/tunes/{tune_id}")).json()["trained_at"])

        await until(trained, "the resumed training to finish")
    assert f"tune {tune_id}: resuming at step {step} of 40" in caplog.text
    assert not (data / "tunes" / str(tune_id) / CHECKPOINT_FILE).exists()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_prompts_go_first_until_the_training_has_earned_its_share() -> None:
    clock = Clock()
    turns = TrainingTurns(share=0.5, clock=clock)  # a second of steps per second of prompts
    turns.resume()
    clock.now += 1.0  # a step
    turns.step_done()
    assert not turns.training_owed()  # nothing earned yet: a waiting prompt goes first
    turns.prompt_served(10.0)
    clock.now += 10.0
    turns.resume()
    taken = 0
    while turns.training_owed():  # steps of 4 s each until 10 s are used up
        clock.now += 4.0
        turns.step_done()
        taken += 1
        turns.resume()
    assert taken == 3


def test_without_waiting_prompts_the_share_is_not_banked() -> None:
    clock = Clock()
    turns = TrainingTurns(share=0.25, clock=clock)
    turns.prompt_served(30.0)
    assert turns.training_owed()
    turns.no_prompt_waiting()
    assert not turns.training_owed()
    assert TrainingTurns(share=0.0).rate == 0.0
