"""Training on the worker: over HTTP with the bot's client, that it learns, that it reloads.

Everything real: the worker under uvicorn, its store and queue, the tiny SDXL, PEFT, the Haar
detector. The tiny model is random, so "it learns" is measured where a random model can show it
(see `test_training_moves_images_toward_the_photos`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backends.astria import AstriaClient
from backends.base import (
    SDXL_BASE_TUNE_ID,
    PromptRequest,
    TrainingImage,
    TuneRequest,
    ValidationError,
)
from backends.local import Worker
from backends.local.accel import Accel
from backends.local.artefacts import load_artefacts
from backends.local.errors import TrainingFailed
from backends.local.models import load_model
from backends.local.records import JobState
from backends.local.train import (
    KOHYA_FILE,
    TrainContext,
    TrainedTune,
    run_training,
    save_tune,
    train_tune,
)
from backends.local.training_data import crops, encode_latents, load_photo, prepare, regions
from backends.local.training_recipe import TrainingDefaults, TrainJob
from backends.local.tune_binding import tune_applied
from tests.fakes.threaded_server import free_port
from tests.imagegen import jpeg_bytes
from tests.worker_fixtures import API_KEY, face_image, run_uvicorn, worker_config

torch = pytest.importorskip("torch")
from diffusers import EulerDiscreteScheduler  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

COLOUR = (220, 40, 40)
LEARN_SIZE = 256
"""The learning run trains and samples at 256 px (32x32 latents): the tiny UNet's attention (where
its LoRA acts) then sees 16x16 and 8x8 grids, and a CPU step still costs about a tenth of a
second. What is measured (latents) does not need more pixels."""
LEARN_STEPS = 100
SEEDS = (0, 1, 2)


# -- over HTTP ------------------------------------------------------------------------------


def photo(i: int, size: int = 1024) -> TrainingImage:
    return TrainingImage(f"me{i}.jpg", jpeg_bytes(size, size, seed=i), "image/jpeg")


async def wait_for_tune(client: AstriaClient, tune_id: int, done: object, seconds: float) -> dict:
    """Poll GET /tunes/:id until `done(raw json)` holds; a hang fails the test."""
    async with asyncio.timeout(seconds):
        while True:
            raw = (await client.get_tune(tune_id)).raw
            if raw["status"] == "failed":
                pytest.fail(f"training failed: {raw['error']}")
            if done(raw):  # type: ignore[operator]
                return raw
            await asyncio.sleep(0.05)


async def test_small_photo_is_refused_at_acceptance(tmp_path: Path) -> None:
    worker = Worker(worker_config(tmp_path / "worker", api_key=API_KEY))
    async with run_uvicorn(worker.app) as url, AstriaClient(API_KEY, url) as client:
        images = [photo(0), photo(1, size=800)]
        with pytest.raises(ValidationError, match=r"me1\.jpg is 800x800 px.*at least 1024"):
            await client.create_tune(TuneRequest(title="small", name="man", images=images))
        assert await client.list_tunes() == []


@pytest.mark.slow
async def test_tune_trains_over_http_survives_a_restart_and_prompts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /tunes -> progress and eta while it runs -> the worker stops mid-training (the tune
    goes back to the queue) -> a new worker trains it from the start -> `<lora:ID:0.8> ohwx man`
    makes images."""
    monkeypatch.setenv("WORKER_TRAIN_RESOLUTION", str(LEARN_SIZE))  # per-worker knob: fast CPU
    monkeypatch.setenv("WORKER_TRAIN_RANK", "4")
    data, port = tmp_path / "worker", free_port()
    request = TuneRequest(
        title="me", name="man", images=[photo(i) for i in range(4)], steps=12, face_crop=True
    )
    first = Worker(worker_config(data, api_key=API_KEY, training=TrainingDefaults.from_env()))
    async with run_uvicorn(first.app, port) as url, AstriaClient(API_KEY, url) as client:
        tune = await client.create_tune(request)
        assert tune.token == "ohwx" and tune.raw["steps"] == 12
        running = await wait_for_tune(
            client, tune.id, lambda t: t["progress"] > 0 and t["eta"], seconds=120
        )
        assert running["status"] == "processing" and running["progress"] < 1
        assert running["eta"] > running["started_training_at"]
    await first.store.open()  # uvicorn is down: the interrupted training went back to the queue
    row = await first.store.get_tune(tune.id)
    await first.store.close()
    assert row is not None and row["state"] == JobState.QUEUED and row["trained_at"] is None

    second = Worker(worker_config(data, api_key=API_KEY, training=TrainingDefaults.from_env()))
    async with run_uvicorn(second.app, port) as url, AstriaClient(API_KEY, url) as client:
        done = await wait_for_tune(client, tune.id, lambda t: t["trained_at"], seconds=180)
        assert done["progress"] == 1.0 and done["eta"] is None and done["error"] is None
        folder = second.config.tunes_dir / str(tune.id)
        assert {p.name for p in folder.iterdir()} >= {
            "lora.safetensors",
            "embeddings.safetensors",
            "manifest.json",
            "lora_kohya.safetensors",
        }
        prompt = await client.create_prompt(
            SDXL_BASE_TUNE_ID,
            PromptRequest(
                text=f"<lora:{tune.id}:0.8> ohwx man",
                num_images=1,
                w=64,
                h=64,
                steps=3,
                seed=1,
                super_resolution=False,
                inpaint_faces=False,
            ),
        )
        async with asyncio.timeout(90):
            while not (prompt.done or prompt.failed):
                await asyncio.sleep(0.1)
                prompt = await client.get_prompt(prompt.id)
        assert not prompt.failed, prompt.user_error
        [url_] = prompt.images
        image = Image.open(io.BytesIO(await client.download(url_)))
        assert image.size == (64, 64)


# -- in process: it learns, and what it saves reloads ----------------------------------------


@dataclass
class ColourTune:
    """A tune trained on photos of one flat colour, kept in memory and saved to `folder`."""

    trained: TrainedTune
    folder: Path
    target: torch.Tensor
    """The latent of a photo of that colour: what the UNet is taught to produce."""
    reports: list[float]


@pytest.fixture(scope="module")
def colour_tune(tmp_path_factory: pytest.TempPathFactory) -> ColourTune:
    root = tmp_path_factory.mktemp("colour")
    paths = []
    for i in range(4):
        paths.append(root / f"red{i}.png")
        Image.new("RGB", (1024, 1024), COLOUR).save(paths[-1])
    job = TrainJob(
        tune_id=1,
        token="ohwx",
        class_word="man",
        base_tune_id=SDXL_BASE_TUNE_ID,
        base_model="tiny",
        images=paths,
        steps=None,
        face_crop=None,
        out_dir=root / "tune",
        device="cpu",
    )
    # The tiny model is random: its attention LoRA can only nudge a random UNet, so the run
    # uses a high learning rate (a real SDXL learns at 1e-4 over 1000 steps at 1024).
    settings = TrainingDefaults(
        steps=LEARN_STEPS, rank=8, unet_lr=3e-2, embedding_lr=3e-2, resolution=LEARN_SIZE
    )
    model = load_model("tiny", "cpu", Accel.off())
    reports: list[float] = []
    crops = prepare(paths, LEARN_SIZE, None)
    trained = run_training(model, job, settings, crops, reports.append)
    save_tune(trained, job.out_dir)
    flat = Image.new("RGB", (LEARN_SIZE, LEARN_SIZE), COLOUR)
    target = encode_latents(model.pipe.vae, [flat], "cpu").latents[0]
    return ColourTune(trained, job.out_dir, target, reports)


def sample(pipe: object, seed: int, output_type: str = "latent") -> torch.Tensor:
    """`ohwx man` with a deterministic sampler and no CFG, so only the model differs."""
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)  # type: ignore[attr-defined]
    pipe.scheduler = scheduler  # type: ignore[attr-defined]
    with torch.no_grad():
        out = pipe(  # type: ignore[operator]
            prompt="ohwx man",
            width=LEARN_SIZE,
            height=LEARN_SIZE,
            num_inference_steps=10,
            guidance_scale=1.0,
            output_type=output_type,
            generator=torch.Generator().manual_seed(seed),
        )
    return torch.as_tensor(np.asarray(out.images[0]))


@pytest.mark.slow
def test_training_moves_images_toward_the_photos(colour_tune: ColourTune) -> None:
    """Images for `ohwx man` end closer to the photos than the same seed without the tune.

    Measured on the latents the UNet produces: the tiny model's random VAE decoder draws every
    flat colour as the same grey texture (red, green, blue, black and white all decode to a mean
    of about (138, 128, 115)), so pixels cannot show a colour; the latent the VAE gives a photo of
    that colour is what the model was taught to produce.
    """
    base = load_model("tiny", "cpu", Accel.off())
    target = colour_tune.target
    before = [float((sample(base.pipe, s) - target).abs().mean()) for s in SEEDS]
    after = [float((sample(colour_tune.trained.pipe, s) - target).abs().mean()) for s in SEEDS]
    print(f"latent distance to the photos: before {before}, after {after}")
    assert all(a < b for a, b in zip(after, before, strict=True))
    assert sum(after) < 0.98 * sum(before)
    reports = colour_tune.reports
    assert reports == sorted(reports) and reports[-1] == 1.0 and len(reports) == LEARN_STEPS + 1


@pytest.mark.slow
def test_saved_tune_reloads_into_a_fresh_pipeline_with_the_same_image(
    colour_tune: ColourTune,
) -> None:
    tune = load_artefacts(colour_tune.folder)
    assert (tune.manifest.token, tune.manifest.rank, tune.manifest.n_tokens) == ("ohwx", 8, 2)
    assert tune.embeddings["clip_l"].shape == (2, 32) and tune.embeddings["clip_g"].shape == (2, 64)
    kohya = load_file(colour_tune.folder / KOHYA_FILE)
    downs = [k for k in kohya if k.endswith(".lora_down.weight")]
    assert downs and all(k.startswith("lora_unet_") for k in kohya)
    assert len(kohya) == 3 * len(downs) and len(downs) * 2 == len(tune.lora)
    expected = sample(colour_tune.trained.pipe, 5)

    fresh = load_model("tiny", "cpu")  # the worker's own levers (its LoRA slot included)
    with tune_applied(fresh, tune, 1.0, ("colour", 1)):
        again = sample(fresh.pipe, 5)
        image = sample(fresh.pipe, 5, "np")
    with tune_applied(fresh, None, 1.0, None):  # a prompt without a tune, as the worker
        without = sample(fresh.pipe, 5)
    assert float((again - expected).abs().max()) < 1e-4
    # the kohya export is the same LoRA: diffusers' kohya loader + the embeddings give the image
    plain = load_model("tiny", "cpu", Accel.off())
    plain.pipe.load_lora_weights(str(colour_tune.folder / KOHYA_FILE))
    for key, encoder, tokenizer in (
        ("clip_l", plain.pipe.text_encoder, plain.pipe.tokenizer),
        ("clip_g", plain.pipe.text_encoder_2, plain.pipe.tokenizer_2),
    ):
        plain.pipe.load_textual_inversion(
            tune.embeddings[key], token="ohwx", text_encoder=encoder, tokenizer=tokenizer
        )
    assert float((sample(plain.pipe, 5) - expected).abs().max()) < 1e-4
    assert float((without - expected).abs().mean()) > 0.05  # the tune was really applied
    assert image.shape == (LEARN_SIZE, LEARN_SIZE, 3)


# -- data -------------------------------------------------------------------------------------


def test_crops_centre_on_the_face_and_add_a_close_up_when_asked() -> None:
    image = Image.new("RGB", (1600, 1024), (90, 110, 140))
    image.paste(face_image(300), (100, 350))
    [face_centred] = regions(image, 128, None)
    assert face_centred == (0, 0, 1024, 1024)  # the face is left of the middle: shifted there
    assert regions(image, 128, False) == [(288, 0, 1312, 1024)]  # face_crop off: the centre
    main, close_up = regions(image, 128, True)
    assert main == face_centred
    left, top, right, bottom = close_up
    assert right - left < 800 and left <= 100 + 150 <= right and top <= 350 + 150 <= bottom
    assert [c.size for c in crops(image, 64, True)] == [(64, 64), (64, 64)]


def test_photos_are_exif_rotated_and_small_ones_fail_the_tune_with_a_message(
    tmp_path: Path,
) -> None:
    upright = tmp_path / "sideways.jpg"
    upright.write_bytes(jpeg_bytes(1024, 1536, orientation=6))  # stored portrait, shown landscape
    assert load_photo(upright).size == (1536, 1024)
    small = tmp_path / "small.jpg"
    small.write_bytes(jpeg_bytes(900, 1200))
    job = TrainJob(
        1,
        "ohwx",
        "man",
        SDXL_BASE_TUNE_ID,
        "tiny",
        [upright, small],
        5,
        None,
        tmp_path / "out",
        "cpu",
    )
    with pytest.raises(TrainingFailed, match=r"photo 2: small\.jpg is 900x1200 px.*1024"):
        train_tune(job, TrainContext(between_steps=lambda f: None))
    assert not (tmp_path / "out").exists()


def test_bf16_base_trains_fp32_parameters_with_checkpointing(tmp_path: Path) -> None:
    """The GPU recipe's dtypes, on the CPU: frozen bf16 base, fp32 LoRA and token rows,
    gradient checkpointing (WORKER_LOW_MEMORY); it trains, saves in the base dtype and draws."""
    path = tmp_path / "me.png"
    Image.new("RGB", (1024, 1024), COLOUR).save(path)
    model = load_model("tiny", "cpu", Accel.off())
    model.pipe.to(dtype=torch.bfloat16)
    model.dtype = torch.bfloat16
    job = TrainJob(1, "ohwx", "man", SDXL_BASE_TUNE_ID, "tiny", [path], 2, None, tmp_path, "cpu")
    settings = TrainingDefaults(steps=2, rank=4, resolution=LEARN_SIZE, low_memory=True)
    trained = run_training(model, job, settings, prepare([path], LEARN_SIZE, None), print)
    trainable = {p.dtype for p in model.pipe.unet.parameters() if p.requires_grad}
    assert trainable == {torch.float32}
    assert {v.dtype for v in trained.lora.values()} == {torch.bfloat16}
    assert {v.dtype for v in trained.embeddings.values()} == {torch.float32}
    assert not model.pipe.unet.is_gradient_checkpointing  # switched off again after training
    image = model.pipe(prompt="ohwx man", width=16, height=16, num_inference_steps=2).images[0]
    assert image.size == (16, 16)


def test_token_rows_learn_before_the_pivot(tmp_path: Path) -> None:
    """Pivotal tuning trains the new token rows, not only the LoRA: one step moves them in a
    direction of their own (retract() alone would only rescale them)."""
    from backends.local.pivotal import TokenEmbeddings
    from backends.local.train_loop import Loop

    path = tmp_path / "me.png"
    Image.new("RGB", (1024, 1024), COLOUR).save(path)
    model = load_model("tiny", "cpu", Accel.off())
    settings = TrainingDefaults(steps=1, rank=4, resolution=LEARN_SIZE, embedding_lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    latents = encode_latents(model.pipe.vae, prepare([path], LEARN_SIZE, None), "cpu")
    tokens = TokenEmbeddings(model.pipe, "ohwx", settings.n_tokens, generator)
    loop = Loop(model, tokens, latents, "man", settings, generator)
    before = [row.detach().clone() for row in tokens.parameters()]
    loop.step(embeddings_learn=True)
    for old, new in zip(before, tokens.parameters(), strict=True):
        rescaled = old * (new.detach().norm() / old.norm())
        assert float((new.detach() - rescaled).abs().max()) > 1e-5


def test_worker_defaults_come_from_the_environment() -> None:
    env = {"WORKER_TRAIN_STEPS": "1500", "WORKER_TRAIN_UNET_LR": "5e-5", "WORKER_LOW_MEMORY": "1"}
    defaults = TrainingDefaults.from_env(env)
    assert (defaults.steps, defaults.unet_lr, defaults.low_memory) == (1500, 5e-5, True)
    assert (defaults.rank, defaults.lora_alpha, defaults.embedding_lr) == (32, 32.0, 3e-4)
    job = TrainJob(1, "ohwx", "man", SDXL_BASE_TUNE_ID, "tiny", [], 400, None, Path("."), None)
    assert defaults.for_job(job).steps == 400  # the tune's own steps win
    assert defaults.for_job(dataclasses.replace(job, steps=None)).steps == 1500
    plain = TrainingDefaults.from_env({})
    unset = dataclasses.replace(job, steps=None)
    assert plain.for_job(unset).steps == 100  # tiny: its images are noise anyway
    assert plain.for_job(dataclasses.replace(unset, base_model="/m/sdxl")).steps == 1000
    with pytest.raises(ValueError, match="WORKER_TRAIN_RANK"):
        TrainingDefaults.from_env({"WORKER_TRAIN_RANK": "big"})
