"""A fleet GPU worker whose GPU is a stopwatch: `python -m tests.fleet_stub_worker`.

Everything but the GPU is real (`gpu_worker.run_gpu_worker`: procrastinate, PostgreSQL, S3,
the tune cache, the rescue and the watchdog); the engine sleeps STUB_IMAGE_S per image and the
trainer STUB_STEP_S per step, calling the same progress hooks as the real ones. For tests and
bench/fleet.py, where only scheduling is under test.

A prompt whose text contains `hang` never progresses (the watchdog's case).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from PIL import Image

from backends.local.artefacts import EMBEDDINGS_FILE, LORA_FILE, MANIFEST_FILE
from backends.local.checkpoint import CHECKPOINT_FILE
from backends.local.config import WorkerConfig
from backends.local.generate import PromptJob
from backends.local.gpu_worker import run_gpu_worker
from backends.local.train import TrainContext
from backends.local.training_recipe import TrainJob

TICK_S = 0.05


class SleepingEngine:
    """`Engine.run_prompt`'s shape: progress reported every tick, one plain image per seed."""

    def __init__(self, image_s: float) -> None:
        self.image_s = image_s
        self.abort = threading.Event()

    def run_prompt(
        self,
        job: PromptJob,
        progress: Callable[[float], None],
        on_image: Callable[[int, Image.Image], None] | None = None,
    ) -> list[Image.Image]:
        print(f"STUB prompt {job.prompt_id} pid {os.getpid()}", file=sys.stderr, flush=True)
        if "hang" in job.params.text:
            time.sleep(3600)
        images = []
        for index in range(job.params.num_images):
            _sleep_with_progress(self.image_s, progress, index, job.params.num_images)
            images.append(Image.new("RGB", (8, 8), (job.params.seed % 256, index, 0)))
            if on_image is not None:  # the single-machine runner writes each image at once
                on_image(index, images[-1])
        return images


def sleeping_trainer(
    step_s: float, steps: int, checkpoint_steps: int = 0
) -> Callable[[TrainJob, TrainContext], None]:
    """Sleeps `step_s` a step; every `checkpoint_steps` steps writes its step as a checkpoint
    (where and when the real trainer does) and resumes from one it finds, as the real one."""

    def train(job: TrainJob, ctx: TrainContext) -> None:
        print(f"STUB tune {job.tune_id} pid {os.getpid()}", file=sys.stderr, flush=True)
        ctx.check()
        assert job.images and all(path.is_file() for path in job.images)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        saved = job.out_dir / CHECKPOINT_FILE
        start = json.loads(saved.read_text())["step"] if saved.is_file() else 0
        if start:
            print(f"STUB tune {job.tune_id} resumes at step {start}", file=sys.stderr, flush=True)
        for step in range(start, steps):
            time.sleep(step_s)
            done = step + 1
            if checkpoint_steps and done % checkpoint_steps == 0 and done < steps:
                saved.write_text(json.dumps({"step": done}))
                ctx.checkpointed(saved)
                print(
                    f"STUB tune {job.tune_id} checkpoint at step {done}",
                    file=sys.stderr,
                    flush=True,
                )
            ctx.between_steps(done / steps)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / LORA_FILE).write_bytes(b"lora")
        (job.out_dir / EMBEDDINGS_FILE).write_bytes(b"embeddings")
        (job.out_dir / MANIFEST_FILE).write_text(json.dumps({"token": job.token}))

    return train


def _sleep_with_progress(
    seconds: float, progress: Callable[[float], None], index: int, count: int
) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(TICK_S, left))
        progress((index + 1 - left / seconds) / count)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    image_s = float(os.environ.get("STUB_IMAGE_S", "0.5"))
    step_s = float(os.environ.get("STUB_STEP_S", "0.2"))
    steps = int(os.environ.get("STUB_STEPS", "10"))
    run_gpu_worker(
        WorkerConfig.from_env(),
        engine_factory=lambda: SleepingEngine(image_s),  # type: ignore[arg-type,return-value]
        trainer=sleeping_trainer(step_s, steps, int(os.environ.get("STUB_CHECKPOINT_STEPS", "0"))),
    )


if __name__ == "__main__":
    main()
