"""Packs on our worker, end to end: the bot's Astria client against the real worker app (tiny
SDXL, its store and queue), callbacks over real HTTP to a local sink.

The test pack makes 64 px images in 2 steps so a run takes seconds on a CPU; the shipped packs
are checked by tests/test_packs_catalog.py. Where a tune must train first, a stand-in trainer
(the Worker's `trainer` seam, as in test_worker_api.py) writes a random tune once the test
releases it: what is under test is that the pack's prompts wait for the training and then run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from backends.astria import AstriaClient
from backends.base import NotFoundError, PackRunRequest, Prompt, TrainingImage, ValidationError
from backends.local import Worker, train
from tests.test_worker_api import png_bytes
from tests.worker_fixtures import (
    API_KEY,
    CallbackSink,
    add_trained_tune,
    run_uvicorn,
    worker_config,
    write_random_tune,
)
from tests.worker_modes import (
    ServedWorker,
    WorkerMaker,
    client_for,
    raw_client,
    read_tune_file,
    worker_maker,
    write_tune_file,
)

pytest.importorskip("torch")

__all__ = ["worker_maker"]  # a fixture: each test runs single and fleet (worker_mode below)

QUICK = """
title = "Quick"
description = "Tiny images for tests."
[defaults]
num_images = 1
w = 64
h = 64
steps = 2
super_resolution = false
inpaint_faces = false
negative_prompt = "blurry, {{avoid}}"
[[prompts.man]]
text = "ohwx man, {{hair}}, portrait one"
[[prompts.man]]
text = "ohwx man, portrait two"
[[prompts.man]]
text = "ohwx man, portrait three"
[[prompts.woman]]
text = "ohwx woman, portrait"
"""
PHOTO = TrainingImage("me.png", png_bytes(), "image/png")


class Trainer:
    """Stand-in trainer: waits for `release`, then writes a random tune (or fails)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, job: train.TrainJob, ctx: train.TrainContext) -> None:
        self.release.wait(120)
        if self.fail:
            raise RuntimeError("out of GPU memory")
        write_random_tune(job.out_dir)


def packs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "packs"
    folder.mkdir()
    (folder / "quick.toml").write_text(QUICK)
    return folder


@pytest.fixture
async def started(
    worker_maker: WorkerMaker, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[ServedWorker]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(trainer: Trainer | None = None, **config: Any) -> ServedWorker:
            running = worker_maker.started(trainer=trainer, packs_dir=packs_dir(tmp_path), **config)
            return await stack.enter_async_context(running)

        yield start


async def settled(client: AstriaClient, tune_id: int, count: int) -> list[Prompt]:
    """The tune's prompts once `count` exist and all have ended (a hang fails the test)."""
    async with asyncio.timeout(180):
        while True:
            prompts = await client.list_prompts(tune_id)
            if len(prompts) >= count and all(p.done or p.failed for p in prompts):
                return prompts
            await asyncio.sleep(0.1)


async def binds(worker: ServedWorker, maker: WorkerMaker) -> int:
    """LoRA binds so far: the worker's /healthz on one machine; on the fleet the API binds
    nothing, its GPU worker does."""
    if maker.gpu is not None:
        return maker.gpu.jobs.binds
    async with raw_client(worker) as http:
        return (await http.get("/healthz")).json()["lora_binds"]


# -- the catalog over HTTP -----------------------------------------------------------------


async def test_packs_list_with_sizes_and_open_by_id_or_slug(started) -> None:
    worker = await started()
    async with client_for(worker) as client:
        packs = await client.list_packs()
        gallery = await client.list_packs(gallery=True)
        quick = await client.get_pack("quick")
        again = await client.get_pack(quick.id)
        with pytest.raises(NotFoundError):
            await client.get_pack("no-such-pack")
    assert [p.id for p in packs] == [p.id for p in gallery]
    assert len(packs) == 9  # the 8 shipped and the operator's own
    headshots = next(p for p in packs if p.slug == "corporate-headshots")
    assert headshots.num_images("woman") == 28 and headshots.costs["man"].cost == 0
    assert quick == again and quick.title == "Quick" and quick.classes == ("man", "woman")
    assert quick.num_images("man") == 3
    assert [p.text for p in quick.prompts_per_class["man"]][1] == "ohwx man, portrait two"


# -- a pack on a trained tune ------------------------------------------------------------


@pytest.mark.slow
async def test_a_pack_on_a_trained_tune_binds_once_and_calls_back(
    started, worker_maker: WorkerMaker
) -> None:
    worker = await started()
    tune_id = await add_trained_tune(worker)
    sink = CallbackSink()
    async with run_uvicorn(sink.app) as sink_url, client_for(worker) as client:
        pack = await client.get_pack("quick")
        first, second, _ = pack.prompts_per_class["man"]
        run = await client.run_pack(
            pack.id,
            PackRunRequest(
                tune_ids=[tune_id],
                prompt_ids=[first.id, second.id],
                characteristics={"hair": "red hair", "avoid": "hats"},
                prompt_callback=f"{sink_url}/hook?kind=one",
                prompts_callback=f"{sink_url}/hook?kind=all",
            ),
        )
        assert run.tune is not None and run.tune.id == tune_id and len(run.prompts) == 2
        made = run.prompts[0]
        assert made.text == f"<lora:{tune_id}:1> ohwx man, red hair, portrait one"
        assert made.raw["negative_prompt"] == "blurry, hats"
        assert (made.pack_id, made.orig_prompt_id) == (pack.id, first.id)

        prompts = await settled(client, tune_id, 2)
        assert all(p.done and p.pack_id == pack.id for p in prompts)
        assert await binds(worker, worker_maker) == 1  # the tune was bound once for both prompts
        for _ in range(200):  # callbacks are POSTed in the background: up to 10 s
            if len(sink.received) >= 3:
                break
            await asyncio.sleep(0.05)
    singles = [body["prompt"]["id"] for body in sink.received if isinstance(body, dict)]
    [together] = [body for body in sink.received if isinstance(body, list)]
    assert sorted(singles) == sorted(p.id for p in prompts)
    assert sorted(p["id"] for p in together) == sorted(singles)
    assert all(p["images"] for p in together)


async def test_likes_add_up_per_pack_prompt_and_order_the_packs(started) -> None:
    worker = await started()
    tune_id = await add_trained_tune(worker)
    async with client_for(worker) as client:
        pack = await client.get_pack("quick")
        run = await client.run_pack(pack.id, PackRunRequest(tune_ids=[tune_id, tune_id]))
        assert len(run.prompts) == 6  # the pack twice on the same tune: two runs
        one, _, _, again, _, _ = run.prompts  # the same pack prompt in both runs
        assert one.orig_prompt_id == again.orig_prompt_id
        for prompt in (one, again, again):  # a like is a state: twice is once
            await client.like_prompt(prompt.id)
        liked = await client.get_pack("quick")
        assert liked.likes == 2
        assert liked.prompts_per_class["man"][0].likes == 2
        assert (await client.list_packs(order="likes"))[0].slug == "quick"
        await client.unlike_prompt(again.id)
        assert (await client.get_pack("quick")).likes == 1
        with pytest.raises(NotFoundError):
            await client.like_prompt(424242)


# -- a pack on a new tune, prompts_attributes ----------------------------------------------


@pytest.mark.slow
async def test_a_pack_on_a_new_tune_waits_for_its_training(started) -> None:
    trainer = Trainer()
    worker = await started(trainer)
    async with client_for(worker) as client:
        run = await client.run_pack(
            (await client.get_pack("quick")).id,
            PackRunRequest(title="shoot-1", name="man", images=[PHOTO]),
        )
        tune = run.tune
        assert tune is not None and not tune.done and len(run.prompts) == 3
        await asyncio.sleep(0.5)  # the runner is free, yet the prompts must wait
        waiting = await client.list_prompts(tune.id)
        assert {p.raw["status"] for p in waiting} == {"queued"}
        assert tune.raw["ckpt_url"] is None

        trainer.release.set()
        prompts = await settled(client, tune.id, 3)
        assert all(p.done for p in prompts)
        assert (await client.get_tune(tune.id)).done


@pytest.mark.slow
async def test_prompts_attributes_of_a_new_tune_run_after_its_training(started) -> None:
    trainer = Trainer()
    worker = await started(trainer)
    fields = {
        "tune[title]": "with-prompts",
        "tune[name]": "woman",
        "tune[prompts_attributes][0][text]": "<lora:...:0.7> ohwx woman on a boat",
        "tune[prompts_attributes][0][w]": "64",
        "tune[prompts_attributes][0][h]": "64",
        "tune[prompts_attributes][0][steps]": "2",
        "tune[prompts_attributes][0][num_images]": "1",
        "tune[prompts_attributes][1][text]": "in a garden",
        "tune[prompts_attributes][1][w]": "64",
        "tune[prompts_attributes][1][h]": "64",
        "tune[prompts_attributes][1][steps]": "2",
        "tune[prompts_attributes][1][num_images]": "1",
    }
    async with raw_client(worker) as http, client_for(worker) as client:
        files = [("tune[images][]", ("me.png", PHOTO.content, "image/png"))]
        response = await http.post("/tunes", data=fields, files=files)
        assert response.status_code == 201, response.text
        tune_id = response.json()["id"]
        trainer.release.set()
        prompts = await settled(client, tune_id, 2)
    texts = sorted(p.text for p in prompts)
    assert texts == [
        f"<lora:{tune_id}:0.7> ohwx woman on a boat",
        f"<lora:{tune_id}:1> in a garden",  # as sent: no subject is added
    ]
    assert all(p.done for p in prompts)


async def test_a_failed_training_fails_its_waiting_prompts_and_calls_back(started) -> None:
    trainer = Trainer(fail=True)
    worker = await started(trainer)
    sink = CallbackSink()
    async with run_uvicorn(sink.app) as sink_url, client_for(worker) as client:
        request = PackRunRequest(
            title="doomed", name="woman", images=[PHOTO], prompts_callback=f"{sink_url}/hook"
        )
        run = await client.run_pack((await client.get_pack("quick")).id, request)
        trainer.release.set()
        [prompt] = await settled(client, run.tune.id, 1)
        await asyncio.wait_for(sink.event.wait(), 10)
    assert prompt.failed and "out of GPU memory" in prompt.user_error
    assert [[p["id"] for p in body] for body in sink.received] == [[prompt.id]]


# -- refusals ------------------------------------------------------------------------------


async def test_bad_pack_runs_are_refused_and_leave_nothing_behind(started) -> None:
    worker = await started()
    man = await add_trained_tune(worker)
    dog = await worker.store.create_tune(
        {
            "title": "rex",
            "name": "dog",
            "token": "ohwx",
            "base_tune_id": 666678,
            "model_type": "pti",
        },
        [],
        None,
    )
    async with client_for(worker) as client:
        pack_id = (await client.get_pack("quick")).id
        cases = [
            (999, PackRunRequest(tune_ids=[man]), NotFoundError, "Pack 999"),
            (pack_id, PackRunRequest(tune_ids=[424242]), NotFoundError, "Tune 424242"),
            (pack_id, PackRunRequest(tune_ids=[man, dog["id"]]), ValidationError, "man, woman"),
            (pack_id, PackRunRequest(tune_ids=[man], prompt_ids=[1]), ValidationError, r"\[1\]"),
            (
                pack_id,
                PackRunRequest(tune_ids=[man], characteristics={"hair": "<lora:7:1>"}),
                ValidationError,
                "plain text",
            ),
            (
                pack_id,
                PackRunRequest(title="cat", name="cat", images=[PHOTO]),
                ValidationError,
                "has no prompts for 'cat'",
            ),
            (
                pack_id,
                PackRunRequest(title="urls", name="man", image_urls=["https://example.com/a.jpg"]),
                ValidationError,
                "WORKER_FETCH_URLS",
            ),
        ]
        for pack, request, error, message in cases:
            with pytest.raises(error, match=message):
                await client.run_pack(pack, request)
    assert await worker.store.queued_prompt_ids() == []
    tunes = await worker.store.list_tunes(limit=9, offset=0, before_id=None)
    assert {t["title"] for t in tunes} == {"t", "rex"}


async def test_image_urls_are_fetched_only_from_public_addresses(started) -> None:
    worker = await started(fetch_urls=True)
    urls = ("http://127.0.0.1:7860/me.jpg", "http://169.254.169.254/", "ftp://x/y")
    async with client_for(worker) as client, raw_client(worker) as http:
        pack_id = (await client.get_pack("quick")).id
        for url in urls:
            with pytest.raises(ValidationError, match=r"only (?:public )?http"):
                await client.run_pack(
                    pack_id, PackRunRequest(title=url, name="man", image_urls=[url])
                )
            body = {"tune": {"title": url, "name": "man", "image_urls": [url]}}
            response = await http.post("/tunes", json=body)
            assert response.status_code == 422 and "http" in response.json()["error"]
    assert await worker.store.list_tunes(limit=9, offset=0, before_id=None) == []


# -- model files ---------------------------------------------------------------------------


async def test_a_trained_tunes_model_files_are_downloadable_with_the_key(started) -> None:
    worker = await started(api_key=API_KEY)
    tune_id = await add_trained_tune(worker)
    await write_tune_file(worker, tune_id, "lora_kohya.safetensors", b"kohya bytes")
    async with client_for(worker, API_KEY) as client:
        tune = await client.get_tune(tune_id)
        kohya, diffusers_lora, embeddings = tune.raw["ckpt_urls"]
        assert tune.raw["ckpt_url"] == kohya and kohya.endswith("lora_kohya.safetensors")
        assert await client.download(kohya) == b"kohya bytes"
        lora = await read_tune_file(worker, tune_id, "lora.safetensors")
        assert await client.download(diffusers_lora) == lora
        embedded = await read_tune_file(worker, tune_id, "embeddings.safetensors")
        assert await client.download(embeddings) == embedded
        for name in ("manifest.json", "..%2Fworker.sqlite3"):
            with pytest.raises(NotFoundError):
                await client.download(f"/files/models/{tune_id}/{name}")
    async with raw_client(worker) as anonymous:
        assert (await anonymous.get(f"/files/models/{tune_id}/lora.safetensors")).status_code == 401
    untrained = await worker.store.create_tune(
        {"title": "u", "name": "man", "token": "ohwx", "base_tune_id": 666678, "model_type": "pti"},
        [],
        None,
    )
    async with client_for(worker, API_KEY) as client:
        assert (await client.get_tune(untrained["id"])).raw["ckpt_urls"] == []
        with pytest.raises(NotFoundError):
            await client.download(f"/files/models/{untrained['id']}/lora.safetensors")


# -- restart -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_pack_interrupted_by_a_restart_completes_and_calls_back_once(
    tmp_path: Path,
) -> None:
    config = worker_config(tmp_path / "w", packs_dir=packs_dir(tmp_path))
    sink = CallbackSink()
    async with run_uvicorn(sink.app) as sink_url:
        first = Worker(config)
        await first.start()
        tune_id = await add_trained_tune(first)
        async with client_for(first) as client:
            request = PackRunRequest(tune_ids=[tune_id], prompts_callback=f"{sink_url}/hook")
            run = await client.run_pack((await client.get_pack("quick")).id, request)
        await first.stop()  # at once: the run is at most one prompt in

        second = Worker(config)
        await second.start()
        try:
            async with client_for(second) as client:
                prompts = await settled(client, tune_id, 3)
            await asyncio.wait_for(sink.event.wait(), 10)
            await asyncio.sleep(0.5)  # a second POST would arrive by now
        finally:
            await second.stop()
    assert all(p.done for p in prompts) and len(run.prompts) == 3
    [body] = sink.received
    assert sorted(p["id"] for p in body) == sorted(p.id for p in run.prompts)
