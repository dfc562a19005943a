"""What a fleet GPU worker does for each procrastinate job (issue #16): make a prompt's images,
train a tune, POST a callback.

The GPU work is the single-machine worker's own (the `Engine`, the trainer), run on a daemon
thread so the event loop keeps the worker's heartbeat going. A training lets waiting prompts
run between its steps (`fleet_yield.py`). Inputs come from shared storage
(training photos; trained tunes through the local `TuneFileCache`), results go back to it, and
a job's end is committed with its callback job (`FleetStore.finish`).

A job finds its row `running` when a worker died on it before: it runs again from the start (a
prompt's seed is stored, so it gives the same images). A row that is gone (deleted) or already
finished makes the job a no-op, so a job delivered twice does its work once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from backends.local.config import WorkerConfig
from backends.local.errors import Aborted, GenerationError, JobFailed
from backends.local.file_cache import TuneFileCache, upload_tune
from backends.local.fleet_faults import Watchdog
from backends.local.fleet_jobs import FleetStore, callback_url, defer_job
from backends.local.fleet_yield import PromptsBetweenSteps
from backends.local.generate import Engine, PromptJob
from backends.local.params import PromptParams
from backends.local.queue import _no_query
from backends.local.records import JobKind, JobState, Row
from backends.local.serialize import prompt_json, tune_json
from backends.local.storage import FileStorage
from backends.local.store import now_iso
from backends.local.threads import run_in_daemon_thread
from backends.local.train import TrainContext, Trainer
from backends.local.training_recipe import TrainJob

log = logging.getLogger(__name__)

OPEN_STATES = (JobState.QUEUED, JobState.RUNNING)
"""Row states a job still has work for (`running`: a worker died on it)."""


class CallbackRefused(Exception):
    """The callback's server answered with an error: procrastinate retries the job later."""


class GpuJobs:
    """The task bodies of one GPU worker: one engine (model loaded once), one tune cache."""

    def __init__(
        self,
        config: WorkerConfig,
        store: FleetStore,
        storage: FileStorage,
        cache: TuneFileCache,
        watchdog: Watchdog,
        engine_factory: Callable[[], Engine],
        trainer: Trainer,
    ) -> None:
        self.config = config
        self.store = store
        self.storage = storage
        self.cache = cache
        self.watchdog = watchdog
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._trainer = trainer
        self.stopping = threading.Event()
        """Set on SIGTERM: the running job stops at its next check and goes back in the queue."""
        self.http = httpx.AsyncClient(timeout=config.callback_timeout_s)
        self.prompts_between_steps: PromptsBetweenSteps | None = None
        """Set by the GPU worker once open: a training lets waiting prompts run between steps."""

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def stop(self) -> None:
        self.stopping.set()
        if self._engine is not None:
            self._engine.abort.set()

    def check(self) -> None:
        """Raise Aborted when the worker is stopping (any thread); else count as progress."""
        if self.stopping.is_set():
            raise Aborted("the GPU worker is stopping")
        self.watchdog.beat()

    # -- prompts -------------------------------------------------------------------------

    async def run_prompt(self, row_id: int) -> None:
        row = await self.store.get_prompt(row_id)
        if row is None or row["state"] not in OPEN_STATES:
            return
        params = PromptParams.from_json(row["params"])
        try:
            job = await self._prompt_job(row, params)
        except GenerationError as exc:
            await self._fail(JobKind.PROMPT, row_id, exc.user_message)
            return
        await self.store.update_prompt(row_id, state=JobState.RUNNING, started_at=now_iso())
        log.info("prompt %s: %d image(s) %dx%d", row_id, params.num_images, params.w, params.h)
        try:
            with self.watchdog.watching():
                pngs = await run_in_daemon_thread(self._generate, job)
        except Aborted:
            await self._hand_back(JobKind.PROMPT, row_id)
            return
        except JobFailed as exc:
            await self._fail(JobKind.PROMPT, row_id, exc.user_message)
            return
        except Exception as exc:
            log.exception("prompt %s failed", row_id)
            await self._fail(JobKind.PROMPT, row_id, f"generation failed: {exc}")
            return
        stamp = secrets.token_hex(8)  # unguessable names: file URLs are capabilities
        keys = [f"{JobKind.PROMPT.table}/{row_id}/{stamp}-{i}.png" for i in range(len(pngs))]
        for key, png in zip(keys, pngs, strict=True):
            await self.storage.put(key, png, "image/png")
        done = await self.store.finish(
            JobKind.PROMPT, row_id, state=JobState.DONE, images=keys, finished_at=now_iso()
        )
        if not done:  # deleted while it ran
            await self.storage.delete_folder(f"{JobKind.PROMPT.table}/{row_id}")

    async def _prompt_job(self, row: Row, params: PromptParams) -> PromptJob:
        """The base model and the local folder of the tune the prompt uses, if any."""
        base_id = row["tune_id"]
        lora_id = params.lora_tune_id
        if base_id not in self.config.base_models():
            lora_id = lora_id or base_id
            tune = await self.store.get_tune(base_id)
            if tune is None:
                raise GenerationError(f"tune {base_id} no longer exists")
            base_id = tune["base_tune_id"]
        if lora_id is None:
            return PromptJob(row["id"], params, base_id, None)
        lora = await self.store.get_tune(lora_id)
        if lora is None or lora["state"] != JobState.DONE:
            raise GenerationError(f"tune {lora_id} is not trained (or was deleted)")
        return PromptJob(row["id"], params, base_id, await self.cache.folder(lora_id))

    def _generate(self, job: PromptJob) -> list[bytes]:
        """In the worker thread: the prompt's images as PNG bytes, in seed order."""
        self.check()
        images = self.engine().run_prompt(job, lambda fraction: self.check())
        pngs = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=self.config.accel.png_compress_level)
            pngs.append(buffer.getvalue())
        return pngs

    # -- trainings -----------------------------------------------------------------------

    async def run_tune(self, row_id: int) -> None:
        row = await self.store.get_tune(row_id)
        if row is None or row["state"] not in OPEN_STATES:
            return
        await self.store.update_tune(row_id, state=JobState.RUNNING, started_training_at=now_iso())
        work = self.config.data_dir / "training" / str(row_id)
        try:
            job = await self._train_job(row, work)
            ctx = TrainContext(between_steps=lambda fraction: self._after_step(), check=self.check)
            if self.prompts_between_steps is not None:
                self.prompts_between_steps.new_training()
            with self.watchdog.watching():
                await run_in_daemon_thread(self._trainer, job, ctx)
            await upload_tune(self.storage, row_id, job.out_dir)
        except Aborted:
            await self._hand_back(JobKind.TUNE, row_id)
        except JobFailed as exc:  # the user's error: one warning line (`_fail`), no trace
            await self._fail(JobKind.TUNE, row_id, exc.user_message)
        except Exception as exc:
            log.exception("tune %s failed", row_id)
            await self._fail(JobKind.TUNE, row_id, f"training failed: {exc}")
        else:
            if not await self.store.finish(
                JobKind.TUNE, row_id, state=JobState.DONE, trained_at=now_iso()
            ):
                await self.storage.delete_folder(f"lora/{row_id}")
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _after_step(self) -> None:
        """In the trainer's thread: waiting prompts take the GPU, then the training goes on."""
        self.check()
        if self.prompts_between_steps is not None:
            self.prompts_between_steps.between_steps()
            self.check()  # stopped while a prompt ran

    async def _train_job(self, row: Row, work: Path) -> TrainJob:
        """The tune's photos fetched from storage into `work`, and the trainer's job."""
        photos = work / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        images = []
        for index, key in enumerate(row["images"]):
            path = photos / f"{index}{Path(key).suffix}"
            await asyncio.to_thread(path.write_bytes, await self.storage.read(key))
            images.append(path)
        return TrainJob(
            tune_id=row["id"],
            token=row["token"],
            class_word=row["name"],
            base_tune_id=row["base_tune_id"],
            base_model=self.config.base_models().get(row["base_tune_id"], ""),
            images=images,
            steps=row["steps"],
            face_crop=None if row["face_crop"] is None else bool(row["face_crop"]),
            out_dir=work / "model",
            device=self.config.device,
            config_dir=self.config.sdxl_config_dir,
        )

    # -- endings -------------------------------------------------------------------------

    async def _fail(self, kind: JobKind, row_id: int, error: str) -> None:
        log.warning("%s %s failed: %s", kind, row_id, error)
        column = "error" if kind == JobKind.TUNE else "user_error"
        await self.store.finish(kind, row_id, state=JobState.FAILED, **{column: error})

    async def _hand_back(self, kind: JobKind, row_id: int) -> None:
        """A stop interrupted the job: it goes back in the queue, row and new job together."""
        async with self.store.transaction() as conn:
            get = self.store.get_tune if kind == JobKind.TUNE else self.store.get_prompt
            if await get(row_id) is None:
                return
            update = self.store.update_tune if kind == JobKind.TUNE else self.store.update_prompt
            await update(row_id, state=JobState.QUEUED)
            await defer_job(self.store.jobs, conn, kind, row_id)
        log.info("%s %s: interrupted, queued again", kind, row_id)

    # -- callbacks -----------------------------------------------------------------------

    async def send_callback(self, kind: str, row_id: int) -> None:
        """POST a finished job's JSON to its callback URL; an error answer or no answer raises,
        and procrastinate retries the job with backoff (so a callback comes at least once)."""
        job_kind = JobKind(kind)
        tune = job_kind == JobKind.TUNE
        row = await (self.store.get_tune(row_id) if tune else self.store.get_prompt(row_id))
        url = callback_url(job_kind, row) if row is not None else None
        if row is None or not url:
            return
        base = self.config.public_url or row["origin"] or ""
        body: dict[str, Any] = {kind: tune_json(row, base) if tune else prompt_json(row, base)}
        try:
            response = await self.http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise CallbackRefused(f"callback {_no_query(url)}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise CallbackRefused(f"callback {_no_query(url)} -> {response.status_code}")
        await self.store.claim_callback(job_kind, row_id)
        log.info("callback %s -> %s", _no_query(url), response.status_code)
