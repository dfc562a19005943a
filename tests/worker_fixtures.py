"""Helpers for the worker tests: a worker under real uvicorn, a random tune, a drawn face.

Nothing here is a fake of the worker: tests run the real app, store, queue and tiny SDXL.
What the tests prepare by hand is what training (a later issue) would produce: a tune row marked
trained and a random LoRA + embeddings written in the artefact format.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image, ImageDraw, ImageFilter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backends.base import SDXL_BASE_TUNE_ID
from backends.local import Worker, WorkerConfig
from backends.local.file_cache import upload_tune
from backends.local.fleet_api import FleetWorker
from backends.local.records import JobState
from backends.local.store import now_iso
from tests.fakes.threaded_server import free_port

API_KEY = "sd_test_key"
LORA_RANK = 4
N_TOKENS = 2

_unet_cache: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 in this event loop (lifespan on); yields the base URL.
    `options` go to uvicorn.Config (the production limits: server_limits.server_options())."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def worker_config(data_dir: Path, **overrides: Any) -> WorkerConfig:
    return WorkerConfig(data_dir=data_dir, sdxl_model="tiny", device="cpu", **overrides)


def tiny_lora_targets() -> dict[str, tuple[int, int]]:
    """Attention projections of the tiny UNet -> (in_features, out_features)."""
    if "targets" not in _unet_cache:
        import torch

        from backends.local.models import build_tiny_pipeline

        unet = build_tiny_pipeline().unet
        pattern = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
        targets = {
            name: (module.in_features, module.out_features)
            for name, module in unet.named_modules()
            if isinstance(module, torch.nn.Linear) and pattern.search(name)
        }
        _unet_cache["targets"] = targets
    return _unet_cache["targets"]


def write_random_tune(folder: Path, *, seed: int = 1, token: str = "ohwx") -> None:
    """A random LoRA (strong enough to change the tiny model's output) + embeddings."""
    import torch

    from backends.local.artefacts import Manifest, save_artefacts
    from backends.local.models import TINY_ARCHITECTURE

    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for name, (fan_in, fan_out) in tiny_lora_targets().items():
        lora[f"{name}.lora_A.weight"] = torch.randn(LORA_RANK, fan_in, generator=gen) * 0.5
        lora[f"{name}.lora_B.weight"] = torch.randn(fan_out, LORA_RANK, generator=gen) * 0.5
    embeddings = {
        "clip_l": torch.randn(
            N_TOKENS, TINY_ARCHITECTURE.text_encoder["hidden_size"], generator=gen
        ),
        "clip_g": torch.randn(
            N_TOKENS, TINY_ARCHITECTURE.text_encoder_2["hidden_size"], generator=gen
        ),
    }
    manifest = Manifest(
        token=token, class_word="man", n_tokens=N_TOKENS, base_model="tiny", rank=LORA_RANK
    )
    save_artefacts(folder, manifest, lora, embeddings)


async def add_trained_tune(worker: Worker | FleetWorker, *, seed: int = 1, title: str = "t") -> int:
    """Register a tune as trained in the worker's store, with random artefacts where the
    worker's GPU side finds them: its tunes folder (one machine) or the shared storage (fleet).
    The row has no photos, so the fleet defers no training for it."""
    row = await worker.store.create_tune(
        {
            "title": title,
            "name": "man",
            "token": "ohwx",
            "base_tune_id": SDXL_BASE_TUNE_ID,
            "model_type": "pti",
        },
        [],
        origin=None,
    )
    if isinstance(worker, Worker):
        write_random_tune(worker.config.tunes_dir / str(row["id"]), seed=seed)
    else:
        folder = worker.config.data_dir / "made-tunes" / str(row["id"])
        write_random_tune(folder, seed=seed)
        await upload_tune(worker.storage, row["id"], folder)
    now = now_iso()
    await worker.store.update_tune(
        row["id"], state=JobState.DONE, started_training_at=now, trained_at=now
    )
    return int(row["id"])


def face_image(size: int = 128) -> Image.Image:
    """A face drawn from shapes that OpenCV's Haar cascade really detects (checked in tests)."""
    s = size / 256
    cx = cy = 128 * s
    image = Image.new("RGB", (size, size), (90, 110, 140))
    draw = ImageDraw.Draw(image)
    draw.ellipse([cx - 60 * s, cy - 80 * s, cx + 60 * s, cy + 85 * s], fill=(225, 185, 160))
    draw.chord([cx - 64 * s, cy - 92 * s, cx + 64 * s, cy - 10 * s], 180, 360, fill=(60, 40, 30))
    for sign in (-1, 1):
        brow = [cx + sign * 12 * s, cy - 30 * s, cx + sign * 45 * s, cy - 24 * s]
        draw.rectangle(
            [min(brow[0], brow[2]), brow[1], max(brow[0], brow[2]), brow[3]], fill=(50, 35, 25)
        )
        eye = [cx + sign * 16 * s, cy - 18 * s, cx + sign * 42 * s, cy - 4 * s]
        draw.ellipse(
            [min(eye[0], eye[2]), eye[1], max(eye[0], eye[2]), eye[3]], fill=(250, 250, 250)
        )
        pupil = [cx + sign * 24 * s, cy - 16 * s, cx + sign * 34 * s, cy - 6 * s]
        draw.ellipse(
            [min(pupil[0], pupil[2]), pupil[1], max(pupil[0], pupil[2]), pupil[3]],
            fill=(30, 20, 20),
        )
    draw.polygon(
        [(cx, cy - 2 * s), (cx - 10 * s, cy + 28 * s), (cx + 10 * s, cy + 28 * s)],
        fill=(195, 150, 130),
    )
    draw.ellipse([cx - 26 * s, cy + 42 * s, cx + 26 * s, cy + 56 * s], fill=(160, 70, 70))
    return image.filter(ImageFilter.GaussianBlur(2 * s))


class CallbackSink:
    """A tiny HTTP server that records the callbacks POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.event = asyncio.Event()

        async def hook(request: Request) -> JSONResponse:
            self.received.append(await request.json())
            self.event.set()
            return JSONResponse({})

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@contextlib.asynccontextmanager
async def started(config: WorkerConfig) -> AsyncIterator[Worker]:
    """A worker started on `config`, stopped on the way out."""
    worker = Worker(config)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


async def until(condition: Callable[[], Any], what: str, seconds: float = 120) -> Any:
    """Poll an async `condition` until it returns something truthy; a hang fails the test."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if value := await condition():
                    return value
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")
