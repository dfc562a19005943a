"""What a fleet GPU worker does for each procrastinate job (issue #16): make a prompt's images
(best-of with OVERGENERATE, as on one machine), make a pack run's prompts in a row, train a
tune (its checkpoints copied to storage, `fleet_checkpoint.py`), POST a callback. A job whose row
is deleted while it runs stops at its next check (`fleet_cancel.py`).

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

from backends.local import fleet_checkpoint
from backends.local.best_of import BestOfSelector
from backends.local.config import WorkerConfig
from backends.local.errors import Aborted, GenerationError, JobFailed
from backends.local.file_cache import TuneFileCache, upload_tune
from backends.local.fleet_cancel import DeletedRowWatch
from backends.local.fleet_faults import Watchdog
from backends.local.fleet_jobs import (
    RUN_CALLBACK,
    FleetStore,
    callback_url,
    defer_job,
    defer_run,
)
from backends.local.fleet_progress import NOT_PUBLISHED
from backends.local.fleet_yield import PromptsBetweenSteps
from backends.local.generate import Engine, PromptJob
from backends.local.job_progress import JobProgress
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
        self.deleted = DeletedRowWatch(store)
        """DELETE on any API replica stops the job at its next check (`fleet_cancel.py`)."""
        self.progress = JobProgress()
        """How far the jobs under way on this GPU are, as the single worker's runner keeps it
        (a key is there from the job's start until it let go of the GPU); the GPU worker
        publishes it to the rows, where the API replicas read it (`fleet_progress.py`)."""
        self._selector: BestOfSelector | None = None

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    @property
    def binds(self) -> int:
        """How often a tune's LoRA was bound into this GPU's model so far (`Engine.binds`)."""
        return self._engine.binds if self._engine is not None else 0

    def stop(self) -> None:
        self.stopping.set()
        if self._engine is not None:
            self._engine.abort.set()

    def check(self) -> None:
        """Raise Aborted when the worker is stopping or the running job's row was deleted
        (any thread); else count as progress."""
        if self.stopping.is_set():
            raise Aborted("the GPU worker is stopping")
        self.deleted.check()
        self.watchdog.beat()

    async def _deleted_while_running(self, kind: JobKind, row_id: int) -> bool:
        """After an abort: True (and its files gone) when the row was deleted, not stopped."""
        if await self.store.get_row(kind, row_id) is not None:
            return False
        folder = f"lora/{row_id}" if kind == JobKind.TUNE else f"{kind.table}/{row_id}"
        await self.storage.delete_folder(folder)
        log.info("%s %s: deleted while running, stopped", kind, row_id)
        return True

    # -- prompts -------------------------------------------------------------------------

    async def run_prompt(self, row_id: int) -> None:
        if not await self._make_prompt(row_id):
            await self._hand_back(JobKind.PROMPT, row_id)

    async def run_run(self, row_id: int) -> None:
        """A run's prompts one after another on this GPU, so its tune is fetched and bound
        once; after each, one waiting single prompt may go first (as on one machine: nobody's
        `/imagine` waits behind a 40-image pack). Stopped, the run goes back whole."""
        for prompt_id in await self.store.records.open_run_prompt_ids(row_id):
            if not await self._make_prompt(prompt_id):
                await self._hand_back_run(row_id)
                return
            if self.prompts_between_steps is not None:
                await self.prompts_between_steps.serve_one_prompt()

    async def _make_prompt(self, row_id: int) -> bool:
        """Make a prompt's images and commit its end; False when a stop interrupted it (the
        caller hands it back), True when it ended, failed, or was deleted while it ran."""
        try:
            return await self._make_prompt_row(row_id)
        finally:
            self.progress.end((JobKind.PROMPT, row_id))

    async def _make_prompt_row(self, row_id: int) -> bool:
        row = await self.store.get_prompt(row_id)
        if row is None or row["state"] not in OPEN_STATES:
            return True
        params = PromptParams.from_json(row["params"])
        try:
            job = await self._prompt_job(row, params)
        except GenerationError as exc:
            await self._fail(JobKind.PROMPT, row_id, exc.user_message)
            return True
        await self.store.update_prompt(
            row_id, state=JobState.RUNNING, started_at=now_iso(), **NOT_PUBLISHED
        )
        self.progress.begin((JobKind.PROMPT, row_id))
        log.info("prompt %s: %d image(s) %dx%d", row_id, params.num_images, params.w, params.h)
        try:
            with self.watchdog.watching(), self.deleted.watching(JobKind.PROMPT, row_id):
                pngs, scores = await run_in_daemon_thread(self._generate, job)
        except Aborted:
            return await self._deleted_while_running(JobKind.PROMPT, row_id)
        except JobFailed as exc:
            await self._fail(JobKind.PROMPT, row_id, exc.user_message)
            return True
        except Exception as exc:
            log.exception("prompt %s failed", row_id)
            await self._fail(JobKind.PROMPT, row_id, f"generation failed: {exc}")
            return True
        stamp = secrets.token_hex(8)  # unguessable names: file URLs are capabilities
        keys = [f"{JobKind.PROMPT.table}/{row_id}/{stamp}-{i}.png" for i in range(len(pngs))]
        for key, png in zip(keys, pngs, strict=True):
            await self.storage.put(key, png, "image/png")
        done = await self.store.finish(
            JobKind.PROMPT,
            row_id,
            state=JobState.DONE,
            images=keys,
            finished_at=now_iso(),
            scores=scores,
        )
        if not done:  # deleted while it ran
            await self.storage.delete_folder(f"{JobKind.PROMPT.table}/{row_id}")
        return True

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

    def _generate(self, job: PromptJob) -> tuple[list[bytes], dict[str, Any] | None]:
        """In the worker thread: the prompt's images as PNG bytes (in seed order, or best
        first with OVERGENERATE, as on one machine), and the best-of scores (or None)."""
        self.check()
        key = (JobKind.PROMPT, job.prompt_id)
        scores = None
        if self.config.overgenerate > 1:
            best = self._best_of().run(self.engine(), job, lambda f: self._step(key, f))
            images, scores = best.images, best.to_json()
        else:
            images = self.engine().run_prompt(job, lambda f: self._step(key, f))
        pngs = []
        for image in images:
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=self.config.accel.png_compress_level)
            pngs.append(buffer.getvalue())
        return pngs, scores

    def _best_of(self) -> BestOfSelector:
        if self._selector is None:
            self._selector = BestOfSelector.for_worker(self.config)
        return self._selector

    # -- trainings -----------------------------------------------------------------------

    async def run_tune(self, row_id: int) -> None:
        row = await self.store.get_tune(row_id)
        if row is None or row["state"] not in OPEN_STATES:
            return
        await self.store.update_tune(
            row_id, state=JobState.RUNNING, started_training_at=now_iso(), **NOT_PUBLISHED
        )
        key = (JobKind.TUNE, row_id)
        self.progress.begin(key)
        work = self.config.data_dir / "training" / str(row_id)
        try:
            job = await self._train_job(row, work)
            await fleet_checkpoint.fetch(self.storage, row_id, job.out_dir)
            ctx = TrainContext(
                between_steps=lambda fraction: self._after_step(key, fraction),
                check=self.check,
                checkpointed=fleet_checkpoint.Uploader(self.storage, row_id),
            )
            if self.prompts_between_steps is not None:
                self.prompts_between_steps.new_training()
            with self.watchdog.watching(), self.deleted.watching(JobKind.TUNE, row_id):
                await run_in_daemon_thread(self._trainer, job, ctx)
            await upload_tune(self.storage, row_id, job.out_dir)
        except Aborted:
            if not await self._deleted_while_running(JobKind.TUNE, row_id):
                await self._hand_back(JobKind.TUNE, row_id)
        except JobFailed as exc:  # the user's error: one warning line (`_fail`), no trace
            await self._fail(JobKind.TUNE, row_id, exc.user_message)
        except Exception as exc:
            log.exception("tune %s failed", row_id)
            await self._fail(JobKind.TUNE, row_id, f"training failed: {exc}")
        else:
            await fleet_checkpoint.drop(self.storage, row_id)
            if not await self.store.finish(
                JobKind.TUNE, row_id, state=JobState.DONE, trained_at=now_iso()
            ):
                await self.storage.delete_folder(f"lora/{row_id}")
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
            self.progress.end(key)

    def _step(self, key: tuple[JobKind, int], fraction: float) -> None:
        """In the job's thread, after each step: note how far it is, then check."""
        self.progress.note(key, fraction)
        self.check()

    def _after_step(self, key: tuple[JobKind, int], fraction: float) -> None:
        """In the trainer's thread: waiting prompts take the GPU, then the training goes on."""
        self._step(key, fraction)
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
        if kind == JobKind.TUNE:  # no training will resume from it
            await fleet_checkpoint.drop(self.storage, row_id)
        column = "error" if kind == JobKind.TUNE else "user_error"
        await self.store.finish(kind, row_id, state=JobState.FAILED, **{column: error})

    async def _hand_back(self, kind: JobKind, row_id: int) -> None:
        """A stop interrupted the job: it goes back in the queue, row and new job together."""
        async with self.store.transaction() as conn:
            if await self.store.get_row(kind, row_id) is None:
                return
            await self.store.update_row(kind, row_id, state=JobState.QUEUED)
            await defer_job(self.store.jobs, conn, kind, row_id)
        log.info("%s %s: interrupted, queued again", kind, row_id)

    async def _hand_back_run(self, run_id: int) -> None:
        """A stop interrupted a run: its open prompts queued again, the run's job deferred."""
        async with self.store.transaction() as conn:
            await self.store.requeue_run(run_id)
            await defer_run(self.store.jobs, conn, run_id)
        log.info("run %s: interrupted, queued again", run_id)

    # -- callbacks -----------------------------------------------------------------------

    async def send_callback(self, kind: str, row_id: int) -> None:
        """POST a finished job's JSON to its callback URL; an error answer or no answer raises,
        and procrastinate retries the job with backoff (so a callback comes at least once)."""
        found = await self._callback(kind, row_id)
        if found is None:
            return
        url, body = found
        try:
            response = await self.http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise CallbackRefused(f"callback {_no_query(url)}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise CallbackRefused(f"callback {_no_query(url)} -> {response.status_code}")
        if kind != RUN_CALLBACK:  # a run's was claimed when its job was deferred
            await self.store.claim_callback(JobKind(kind), row_id)
        log.info("callback %s -> %s", _no_query(url), response.status_code)

    async def _callback(self, kind: str, row_id: int) -> tuple[str, Any] | None:
        """The URL and JSON body of a callback; None when its row is gone or names no URL.
        A run's: the array of its prompts (`prompts_callback`, as Astria)."""
        if kind == RUN_CALLBACK:
            run = await self.store.records.get_run(row_id)
            if run is None or not run["prompts_callback"]:
                return None
            base = self.config.public_url or run["origin"] or ""
            ids = await self.store.records.run_prompt_ids(row_id)
            rows = [row for i in ids if (row := await self.store.get_prompt(i)) is not None]
            return (run["prompts_callback"], [prompt_json(r, base) for r in rows]) if rows else None
        job_kind = JobKind(kind)
        tune = job_kind == JobKind.TUNE
        row = await self.store.get_row(job_kind, row_id)
        url = callback_url(job_kind, row) if row is not None else None
        if row is None or not url:
            return None
        base = self.config.public_url or row["origin"] or ""
        return url, {kind: tune_json(row, base) if tune else prompt_json(row, base)}
