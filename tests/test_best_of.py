"""Best-of selection (OVERGENERATE): the ranking on packaged photographs, and the worker
making more images than asked and delivering the best, with their scores in the prompt."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from backends.base import SDXL_BASE_TUNE_ID, Prompt, PromptRequest, TrainingImage, TuneRequest
from backends.local import Worker
from backends.local.best_of import REFERENCES_FILE, Scorer, rank
from backends.local.face_detect import make_detector
from backends.local.likeness import load_embedder
from backends.local.training_recipe import TrainingDefaults
from tests.photos import astronaut, blurred, cameraman, cat, jpeg
from tests.worker_modes import Mode, ServedWorker, WorkerMaker, client_for, worker_maker

pytest.importorskip("cv2")
pytestmark = pytest.mark.slow  # face detection and embedding on 1024 px photos
__all__ = ["worker_maker"]  # a fixture: the worker tests run single and fleet (worker_mode)


def training_set() -> list[Image.Image]:
    """Photos "of" the astronaut: the one packaged photo, reframed, mirrored, recoloured."""
    photo = astronaut()
    return [
        photo,
        ImageOps.mirror(photo),
        photo.crop((128, 0, 896, 768)).resize((1024, 1024)),
        ImageEnhance.Color(photo).enhance(0.4),
    ]


def generated_like_her() -> Image.Image:
    """A new "generation" of the same person: turned, warmer, another framing."""
    turned = ImageEnhance.Color(astronaut().rotate(-7, fillcolor=(40, 40, 60))).enhance(1.5)
    return turned.crop((64, 0, 1024, 960)).resize((1024, 1024))


def test_likeness_ranks_the_same_person_above_another_face_and_no_face() -> None:
    embedder = load_embedder()
    if embedder is None:
        pytest.skip("the likeness extra (face_recognition_models) is not installed")
    detector = make_detector()
    references = [embedder.embed(p, detector.detect(p)[0]) for p in training_set()]
    scorer = Scorer(detector, embedder=embedder, references=references)

    candidates = [cat(), cameraman(), generated_like_her()]
    scores = [scorer.score(image, seed) for seed, image in enumerate(candidates)]

    assert rank(scores) == [2, 1, 0]  # her, another person, no face
    same, other, none = scores[2], scores[1], scores[0]
    assert same.likeness is not None and same.likeness > 0.7
    assert other.likeness is not None and other.likeness < 0.5
    assert none.faces == 0 and none.likeness == 0.0
    assert same.score > 0.8 > other.score > none.score


def test_without_likeness_faces_and_sharpness_decide() -> None:
    scorer = Scorer(make_detector())  # the documented fallback: no embedder
    candidates = [cat(), blurred(astronaut(), 2), astronaut()]
    scores = [scorer.score(image) for image in candidates]
    assert rank(scores) == [2, 1, 0]
    assert all(s.likeness is None for s in scores)
    assert scores[2].faces == 1 and scores[0].faces == 0


def test_pets_are_scored_by_sharpness_alone() -> None:
    scorer = Scorer(make_detector(), person=False)
    sharp, soft = scorer.score(cat()), scorer.score(blurred(cat(), 3))
    assert sharp.score > soft.score
    assert sharp.faces == 0


# -- through the worker ---------------------------------------------------------------------


@pytest.fixture
async def overgenerating(worker_maker: WorkerMaker) -> AsyncIterator[ServedWorker]:
    pytest.importorskip("torch")
    training = TrainingDefaults(rank=4)  # a tune trained over the API in a few CPU seconds
    async with worker_maker.started(overgenerate=2.0, training=training) as worker:
        yield worker


async def finished(worker: ServedWorker, tune_id: int, text: str, n: int) -> tuple[Prompt, list]:
    request = PromptRequest(
        text, num_images=n, seed=11, w=64, h=64, steps=2, super_resolution=False,
        inpaint_faces=False,
    )  # fmt: skip
    async with client_for(worker) as client:
        prompt = await client.create_prompt(tune_id, request)
        async with asyncio.timeout(120):
            while not (prompt.done or prompt.failed):
                await asyncio.sleep(0.1)
                prompt = await client.get_prompt(prompt.id)
        assert not prompt.failed, prompt.user_error
        images = [Image.open(io.BytesIO(await client.download(u))) for u in prompt.images]
    return prompt, images


async def test_the_worker_delivers_the_best_of_twice_as_many(overgenerating: ServedWorker) -> None:
    prompt, images = await finished(overgenerating, SDXL_BASE_TUNE_ID, "a portrait", 3)

    assert len(images) == 3
    assert prompt.raw["generated_images"] == 6
    scores = prompt.raw["scores"]
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    assert len({s["seed"] for s in scores}) == 3
    assert {s["seed"] for s in scores} <= set(range(11, 17))  # seed + j over all six made
    rescored = [Scorer(make_detector()).score(image).score for image in images]
    assert rescored == pytest.approx([s["score"] for s in scores], abs=1e-3)


async def trained_through_the_api(worker: ServedWorker, photos: list[Image.Image]) -> int:
    """A tune made as a client makes one: `POST /tunes` with the photos (the worker's intake
    stores them where it likes and names them on the tune's row), then a short real training."""
    images = [TrainingImage(f"me{i}.jpg", jpeg(p)) for i, p in enumerate(photos)]
    request = TuneRequest(title="me", name="man", images=images, steps=2)
    async with client_for(worker) as client:
        tune = await client.create_tune(request)
        async with asyncio.timeout(300):
            while not (raw := (await client.get_tune(tune.id)).raw)["trained_at"]:
                assert raw["status"] != "failed", raw["error"]
                await asyncio.sleep(0.1)
    return tune.id


# One machine only: the fleet's GPU workers score no likeness (the photos are in the bucket),
# and the test reads the machine's tune folder.
@pytest.mark.parametrize("worker_mode", [Mode.SINGLE])
async def test_a_tunes_training_faces_are_embedded_once_and_kept(overgenerating: Worker) -> None:
    if load_embedder() is None:
        pytest.skip("the likeness extra (face_recognition_models) is not installed")
    tune_id = await trained_through_the_api(overgenerating, [*training_set(), cat()])
    references = overgenerating.config.tunes_dir / str(tune_id) / REFERENCES_FILE
    assert not references.exists()  # made by the first best-of, not by the training

    prompt, images = await finished(overgenerating, tune_id, "ohwx man", 1)

    saved = np.load(references)
    assert saved.shape == (4, 128)  # the four single-face photos; the cat is skipped
    [score] = prompt.raw["scores"]
    assert score["likeness"] is not None  # scored by likeness (the tiny model draws no face)
    assert len(images) == 1 and prompt.raw["generated_images"] == 2

    await overgenerating.store.set_tune_images(tune_id, [])  # the photos swept (retention)
    again, _ = await finished(overgenerating, tune_id, "ohwx man", 1)
    assert again.raw["scores"][0]["likeness"] is not None  # the kept embeddings still score
    assert np.array_equal(np.load(references), saved)
