"""The worker's HTTP contract: auth, validation (422), 404s, shapes, tunes, callbacks, priority.

The bot's own Astria client drives the worker app (httpx's ASGI transport: the same app the bot
runs in-process); callbacks go over real HTTP to a local sink.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from pathlib import Path

import pytest
from PIL import Image

from backends.astria import AstriaClient
from backends.base import (
    SDXL_BASE_TUNE_ID,
    AuthError,
    NotFoundError,
    PromptRequest,
    TrainingImage,
    Tune,
    TuneRequest,
    ValidationError,
)
from backends.local import WorkerConfig
from backends.local.errors import PhotoError, TrainerUnavailable
from backends.local.records import JobState
from backends.local.train import TrainContext
from backends.local.training_recipe import TrainJob
from tests.imagegen import png_claiming_size
from tests.worker_fixtures import API_KEY, CallbackSink, add_trained_tune, run_uvicorn
from tests.worker_modes import (
    ServedWorker,
    WorkerMaker,
    client_for,
    raw_client,
    worker,
    worker_maker,
    worker_mode,
)

pytest.importorskip("torch")

__all__ = ["worker", "worker_maker", "worker_mode"]  # fixtures: each test runs single and fleet


def png_bytes(size: int = 1024) -> bytes:  # POST /tunes refuses photos under 1024 px
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 40)).save(buf, format="PNG")
    return buf.getvalue()


def small(text: str, **kw: object) -> PromptRequest:
    values = {"w": 64, "h": 64, "steps": 2, "num_images": 1, "seed": 1}
    values.update({"super_resolution": False, "inpaint_faces": False}, **kw)
    return PromptRequest(text=text, **values)  # type: ignore[arg-type]


# -- 422 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        ("<lora:{t}:1> <lora:{t}:0.5> ohwx man", {}, "at most one"),
        ("<lora:999:1> ohwx man", {}, "unknown LoRA"),
        ("<lora:{u}:1> ohwx man", {}, "not trained"),
        ("<lora:{t}:1> ohwx man", {"scheduler": "ddim"}, "scheduler"),
        ("<lora:{t}:1> ohwx man", {"num_images": 9}, "num_images"),
        ("<lora:{t}:1> ohwx man", {"num_images": 0}, "num_images"),
        ("<lora:{t}:1> ohwx man", {"w": 100}, "multiple of 8"),
        ("<lora:{t}:1> ohwx man", {"h": 4096}, "between"),
        ("<lora:{t}:1> ohwx man", {"super_resolution": False, "inpaint_faces": True}, "requires"),
    ],
)
async def test_invalid_prompts_are_422(
    worker: ServedWorker, text: str, kw: dict, message: str
) -> None:
    trained = await add_trained_tune(worker)
    untrained = (
        await worker.store.create_tune(
            {
                "title": "u",
                "name": "man",
                "token": "ohwx",
                "base_tune_id": SDXL_BASE_TUNE_ID,
                "model_type": "pti",
            },
            [],
            None,
        )
    )["id"]
    async with client_for(worker) as client:
        with pytest.raises(ValidationError, match=message) as info:
            await client.create_prompt(
                SDXL_BASE_TUNE_ID, small(text.format(t=trained, u=untrained), **kw)
            )
    assert info.value.status == 422
    assert await worker.store.queued_prompt_ids() == []


async def test_422_body_is_an_error_object(worker: ServedWorker) -> None:
    async with raw_client(worker) as http:
        response = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json={"prompt": {"text": "x", "num_images": 20}}
        )
        missing = await http.post(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts", json={"prompt": {}})
    assert response.status_code == 422
    assert "num_images" in response.json()["error"]
    assert missing.status_code == 422


async def test_invalid_tunes_are_422(worker: ServedWorker) -> None:
    image = TrainingImage("a.png", png_bytes(), "image/png")
    async with client_for(worker) as client:
        with pytest.raises(ValidationError, match="images"):
            await client.create_tune(TuneRequest(title="a", name="man", images=[]))
        with pytest.raises(ValidationError, match="not a readable image"):
            bad = TrainingImage("b.jpg", b"not an image", "image/jpeg")
            await client.create_tune(TuneRequest(title="b", name="man", images=[bad]))
        with pytest.raises(ValidationError, match="not a readable image"):
            bomb = TrainingImage("c.png", png_claiming_size(100_000, 100_000), "image/png")
            await client.create_tune(TuneRequest(title="bomb", name="man", images=[bomb]))
        with pytest.raises(ValidationError, match="base_tune_id"):
            await client.create_tune(
                TuneRequest(title="c", name="man", images=[image], base_tune_id=1)
            )


# -- 401 / 404 ---------------------------------------------------------------------------


async def test_bearer_key_is_required_when_configured(worker_maker: WorkerMaker) -> None:
    async with worker_maker.started(api_key=API_KEY) as worker:
        for key in (None, "wrong"):
            async with client_for(worker, key) as client:
                with pytest.raises(AuthError):
                    await client.get_tune(SDXL_BASE_TUNE_ID)
        async with raw_client(worker) as http:
            files = await http.get("/files/prompts/1/x.png")
            assert files.status_code == 401
            assert files.json() == {"error": "Unauthorized"}
        async with client_for(worker, API_KEY, host="10.9.8.7") as client:  # key: any client
            assert (await client.get_tune(SDXL_BASE_TUNE_ID)).done


async def test_without_key_only_loopback_clients_are_served(worker: ServedWorker) -> None:
    async with client_for(worker, host="10.9.8.7") as client:
        with pytest.raises(AuthError):
            await client.list_tunes()
    async with client_for(worker, host="::1") as client:
        assert await client.list_tunes() == []


async def test_unknown_ids_are_404(worker: ServedWorker) -> None:
    tune_id = await add_trained_tune(worker)
    async with client_for(worker) as client:
        prompt = await client.create_prompt(SDXL_BASE_TUNE_ID, small("a cat"))
        for call in (
            client.get_tune(123),
            client.get_prompt(123),
            client.get_prompt(prompt.id, tune_id=tune_id),  # exists, but under another tune
            client.create_prompt(123, small("a cat")),
            client.list_prompts(123),
            client.delete_tune(123),
            client.delete_prompt(123),
        ):
            with pytest.raises(NotFoundError):
                await call
    async with raw_client(worker) as http:
        assert (await http.get("/files/../worker.sqlite3")).status_code == 404
        assert (await http.get("/nothing")).json() == {"error": "Not found"}


async def test_a_bug_is_logged_once_and_answered_as_json_500(
    worker_maker: WorkerMaker, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose store was never opened stands in for a bug: the in-process client gets a
    500 in Astria's error shape (not the exception), and the log one stack trace."""
    worker = worker_maker.build()  # not started: its store is closed
    async with raw_client(worker) as http:
        response = await http.get("/tunes")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    traces = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in traces] == ["GET /tunes failed"]


# -- shapes ------------------------------------------------------------------------------


async def test_json_suffix_json_body_and_astria_shapes(worker: ServedWorker) -> None:
    async with raw_client(worker) as http:
        base = (await http.get(f"/tunes/{SDXL_BASE_TUNE_ID}.json")).json()
        assert base["id"] == SDXL_BASE_TUNE_ID and base["trained_at"]
        created = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts.json",
            json={"prompt": {"text": "a cat", "w": 64, "h": 64, "steps": 2, "num_images": 1}},
        )
        assert created.status_code == 201
        body = created.json()
        for key in ("id", "text", "images", "tune_id", "url", "created_at", "trained_at"):
            assert key in body
        assert body["images"] == [] and body["tune_id"] == SDXL_BASE_TUNE_ID
        assert body["url"].endswith(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts/{body['id']}.json")
        assert 0.0 <= body["progress"] <= 1.0 and "queue_position" in body
        same = (await http.get(f"/prompts/{body['id']}.json")).json()
        assert same["id"] == body["id"]
        listed = (await http.get(f"/tunes/{SDXL_BASE_TUNE_ID}/prompts")).json()
        assert [p["id"] for p in listed] == [body["id"]]
        form = await http.post(
            f"/tunes/{SDXL_BASE_TUNE_ID}/prompts",
            data={
                "prompt[text]": "a dog",
                "prompt[num_images]": "1",
                "prompt[w]": "64",
                "prompt[h]": "64",
                "prompt[super_resolution]": "false",
            },
        )
        assert form.status_code == 201 and form.json()["w"] == 64
        assert (await http.delete(f"/prompts/{body['id']}")).status_code == 200
        assert (await http.get(f"/prompts/{body['id']}")).status_code == 404


async def until_failed(client: AstriaClient, tune: Tune) -> Tune:
    """The tune once it failed, polled for up to 10 s (the caller asserts that it did)."""
    for _ in range(200):
        tune = await client.get_tune(tune.id)
        if tune.failed:
            break
        await asyncio.sleep(0.05)
    return tune


def _no_trainer(job: TrainJob, ctx: TrainContext) -> None:
    """A worker build without training (test_worker_train.py covers the real trainer)."""
    raise TrainerUnavailable("Training is not available on this worker")


async def test_tune_is_stored_and_fails_honestly_without_a_trainer(
    worker_maker: WorkerMaker,
) -> None:
    sink = CallbackSink()
    async with (
        worker_maker.started(trainer=_no_trainer) as worker,
        run_uvicorn(sink.app) as sink_url,
        client_for(worker) as client,
    ):
        images = [TrainingImage(f"{i}.png", png_bytes(), "image/png") for i in range(3)]
        request = TuneRequest(
            title="uuid-1", name="woman", images=images, callback=f"{sink_url}/hook?s=1"
        )
        tune = await client.create_tune(request)
        assert tune.token == "ohwx" and not tune.done and not tune.failed
        assert len(tune.raw["orig_images"]) == 3
        again = await client.create_tune(request)  # the title is the idempotency key
        assert again.id == tune.id
        tune = await until_failed(client, tune)
        assert tune.failed and not tune.done
        assert "Training is not available" in (tune.error or "")
        await asyncio.wait_for(sink.event.wait(), 5)
        await asyncio.sleep(0.2)
        assert len(sink.received) == 1
        assert sink.received[0]["tune"]["id"] == tune.id
        photo = await client.download(tune.raw["orig_images"][0])
        assert photo == png_bytes()
        assert [t.id for t in await client.list_tunes()] == [tune.id]
        await client.delete_tune(tune.id)
        with pytest.raises(NotFoundError):
            await client.get_tune(tune.id)


def _refusing_trainer(job: TrainJob, ctx: TrainContext) -> None:
    """What the trainer does with a photo it cannot use (test_worker_train.py shows it does)."""
    raise PhotoError("photo 2: me.jpg is 900x1200 px")


async def test_a_users_training_error_is_one_line_not_a_stack_trace(
    worker_maker: WorkerMaker, caplog: pytest.LogCaptureFixture
) -> None:
    # Listen on the worker's logger itself: a test that configured logging before this one
    # (the JSON log tests) may have stopped its records from reaching the root logger.
    worker_logger = logging.getLogger("backends.local")
    worker_logger.addHandler(caplog.handler)
    propagates, worker_logger.propagate = worker_logger.propagate, False  # each record once
    try:
        async with (
            worker_maker.started(trainer=_refusing_trainer) as worker,
            client_for(worker) as client,
        ):
            images = [TrainingImage("1.png", png_bytes(), "image/png")]
            tune = await client.create_tune(TuneRequest(title="t", name="man", images=images))
            tune = await until_failed(client, tune)
    finally:
        worker_logger.removeHandler(caplog.handler)
        worker_logger.propagate = propagates
    assert tune.error == "training failed: photo 2: me.jpg is 900x1200 px"
    records = [r for r in caplog.records if r.name.startswith("backends.local")]
    failed = [r for r in records if "me.jpg" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]
    assert not any(r.exc_info for r in records)


@pytest.mark.slow
async def test_training_yields_the_gpu_to_prompts_between_steps(
    worker_maker: WorkerMaker,
) -> None:
    """A prompt queued during a training runs before the training's next step."""
    order: list[str] = []
    prompt_queued = threading.Event()

    def trainer(job, ctx) -> None:  # a stand-in for the next issue's trainer
        from backends.local.artefacts import Manifest  # noqa: F401  (format is importable)

        order.append("train-start")
        assert prompt_queued.wait(10)
        ctx.between_steps(0.5)
        order.append("train-step-2")
        raise RuntimeError("stand-in trainer stops here")

    async with worker_maker.started(trainer=trainer) as worker, client_for(worker) as client:
        images = [TrainingImage("1.png", png_bytes(), "image/png")]
        tune = await client.create_tune(TuneRequest(title="t", name="man", images=images))
        for _ in range(100):
            if order:
                break
            await asyncio.sleep(0.05)
        prompt = await client.create_prompt(SDXL_BASE_TUNE_ID, small("a cat"))
        prompt_queued.set()
        for _ in range(600):
            prompt = await client.get_prompt(prompt.id)
            if prompt.done and order[-1] == "train-step-2":
                break
            await asyncio.sleep(0.05)
        assert prompt.done and order == ["train-start", "train-step-2"]
        row = await worker.store.get_prompt(prompt.id)
        for _ in range(600):  # the training's end is committed after its last step returned
            tune_row = await worker.store.get_tune(tune.id)
            if tune_row and tune_row["state"] != JobState.RUNNING:
                break
            await asyncio.sleep(0.05)
        assert row and tune_row and row["finished_at"] <= tune_row["updated_at"]
        assert tune_row["state"] != JobState.QUEUED


def test_config_from_env(tmp_path: Path) -> None:
    config = WorkerConfig.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "SDXL_MODEL": "/m/base.safetensors",
            "SDXL_EXTRA_MODELS": "1000001=/m/zavy.safetensors, 1000002=org/model",
        }
    )
    assert config.base_models() == {
        SDXL_BASE_TUNE_ID: "/m/base.safetensors",
        1000001: "/m/zavy.safetensors",
        1000002: "org/model",
    }
    assert config.api_key is None and config.data_dir == tmp_path / "worker"
    with pytest.raises(ValueError):
        WorkerConfig.from_env({"SDXL_EXTRA_MODELS": "666678=/x"})
