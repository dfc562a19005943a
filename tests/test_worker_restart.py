"""A restart of the worker loses no accepted prompt: it is resumed and completes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.astria import AstriaClient
from backends.base import SDXL_BASE_TUNE_ID, PromptRequest
from backends.local import Worker
from backends.local.records import JobState
from tests.fakes.threaded_server import free_port
from tests.worker_fixtures import API_KEY, add_trained_tune, run_uvicorn, worker_config

pytest.importorskip("torch")


async def test_prompt_queued_at_stop_completes_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "worker"
    port = free_port()
    first = Worker(worker_config(data, api_key=API_KEY))
    async with run_uvicorn(first.app, port) as url, AstriaClient(API_KEY, url) as client:
        tune_id = await add_trained_tune(first)
        prompt = await client.create_prompt(
            SDXL_BASE_TUNE_ID,
            PromptRequest(
                text=f"<lora:{tune_id}:1> ohwx man",
                num_images=2,
                w=64,
                h=64,
                steps=20,
                seed=5,
                super_resolution=False,
                inpaint_faces=False,
            ),
        )
    # uvicorn is down and the worker stopped: the prompt was interrupted or never started.
    assert first.store._db is None
    second = Worker(worker_config(data, api_key=API_KEY))
    await second.store.open()
    row = await second.store.get_prompt(prompt.id)
    await second.store.close()
    assert row is not None and row["state"] == JobState.QUEUED and row["images"] == []

    async with run_uvicorn(second.app, port) as url, AstriaClient(API_KEY, url) as client:
        for _ in range(600):
            prompt = await client.get_prompt(prompt.id)
            if prompt.done or prompt.failed:
                break
            await asyncio.sleep(0.1)
        assert prompt.done and not prompt.failed
        assert len(prompt.images) == 2
        assert all([await client.download(u) for u in prompt.images])
