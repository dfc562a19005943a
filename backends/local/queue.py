"""The job runner: one GPU, one job at a time, prompts before trainings, nothing lost.

- The queue is the store (tunes and prompts in state `queued`), so it survives restarts.
- One asyncio task takes the next job and runs the GPU work in a worker thread (the event loop
  keeps answering HTTP meanwhile). Prompts always go first: a user is waiting, and a prompt takes
  seconds, a training minutes. Which prompt is `schedule.py`'s choice (a pack's run kept
  together, single prompts let in between its prompts, prompts of an untrained tune waiting).
- A training that is running does not block prompts either: the trainer calls
  `ctx.between_steps()` after every step, which runs the queued prompts on the same GPU before
  the training continues (see `_between_steps`). Prompts wait for at most one step, plus the
  training's guaranteed share when prompts never stop coming (fair_share.py: no starvation).
- stop(): sets an abort flag that the running job sees at its next check; the job stays queued
  and starts over at the next start() (a prompt's seed is stored, so it gives the same images;
  a training resumes from its last checkpoint, see checkpoint.py). A step that checks no
  flag gets `stop_grace_s`, then is left behind on its daemon thread (threads.py), its job
  queued again, so a stop ends within the service manager's timeout.
- cancel(): DELETE of a running prompt or tune (the row is already gone) stops that job at its
  next check, so its hires pass or face redraw never runs and a training frees the GPU for the
  next job. Checks: every denoising step of every pipeline call (txt2img, hires img2img, face
  img2img), between stages and faces, between the sub-steps of a model load, every training
  step. An aborted job whose row is gone is dropped (its files removed), never requeued.
- A training that fails takes the prompts waiting for it along (failed, with its error).
- Callbacks are POSTed once, after the result is committed (`claim_callback` makes the at-most-
  once decision in SQLite before the POST; a worker killed between the two sends none, as Astria
  does not retry either). A client that must not miss an event polls as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from backends.local import train
from backends.local.artefacts import has_artefacts
from backends.local.best_of import BestOfSelector
from backends.local.config import WorkerConfig
from backends.local.errors import Aborted, GenerationError, TrainerUnavailable, TrainingFailed
from backends.local.fair_share import TrainingTurns
from backends.local.faults import FaultPoint, fault_at
from backends.local.generate import Engine, PromptJob
from backends.local.job_progress import JobProgress
from backends.local.models import ModelCache
from backends.local.packs.callbacks import RunCallbacks
from backends.local.packs.records import SCHEMA as PACK_SCHEMA
from backends.local.params import PromptParams
from backends.local.pngwriter import PngWriter
from backends.local.records import JobKind, JobState, Row
from backends.local.schedule import Scheduler
from backends.local.serialize import prompt_json, tune_json
from backends.local.store import WorkerStore, now_iso
from backends.local.threads import run_in_daemon_thread
from backends.local.training_recipe import TrainJob

log = logging.getLogger(__name__)

IDLE_POLL_S = 5.0
"""The runner also re-checks the store this often when nobody woke it (belt and braces)."""

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0
"""After consecutive failures of the loop itself (a full disk, a broken job that cannot even be
marked failed), the runner waits 0.5 s, 1 s, 2 s ... up to a minute: a few log lines a minute,
not thousands a second."""

EngineFactory = Callable[[], Engine]


class JobRunner:
    """Owns the engine (lazily built) and the single runner task."""

    def __init__(
        self,
        store: WorkerStore,
        config: WorkerConfig,
        engine_factory: EngineFactory | None = None,
        trainer: train.Trainer | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._engine_factory = engine_factory or self._default_engine
        self._engine: Engine | None = None
        self._trainer = trainer or functools.partial(train.train_tune, defaults=config.training)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.progress = JobProgress()
        self._active: list[tuple[JobKind, int]] = []
        """Jobs under way, outermost first: a training, and a prompt it let through."""
        self._cancelled: set[tuple[JobKind, int]] = set()
        """Active jobs whose rows were deleted: they stop at their next check."""
        self._turns = TrainingTurns(config.training_share)
        self.schedule = Scheduler(store)
        self.runs = RunCallbacks(store, config.public_url, self._post_later)
        self._selector: BestOfSelector | None = None

    @property
    def running(self) -> tuple[JobKind, int] | None:
        """The job on the GPU now (a prompt served between training steps wins); /healthz."""
        return self._active[-1] if self._active else None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        if self._engine is not None:
            self._engine.abort.clear()
        self._http = httpx.AsyncClient(timeout=self.config.callback_timeout_s)
        await self.store.db.executescript(PACK_SCHEMA)  # the run and like tables (packs/)
        resumed = await self.store.requeue_interrupted()
        if resumed:
            log.info("resuming %d interrupted job(s)", resumed)
        for kind, row_id in await self.store.unsent_callbacks():
            await self._send_callback(kind, row_id)
        await self.runs.send_unsent()
        self._task = asyncio.create_task(self._run(), name="worker-jobs")

    async def stop(self) -> None:
        """Stop taking jobs; abort the running one at its next step (it stays queued)."""
        self._stopping = True
        if self._engine is not None:
            self._engine.abort.set()
        self._wake.set()
        if self._task is not None:
            await self._wait_for_running_job()
            self._task = None
        for task in list(self._background):
            await asyncio.wait([task], timeout=self.config.callback_timeout_s)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _wait_for_running_job(self) -> None:
        """Give the running job `stop_grace_s` to reach its next abort check; a step that
        checks no flag (a model load, a long GPU call) is left running on its daemon thread
        and its job put back in the queue, so the process exits within its stop timeout."""
        assert self._task is not None
        done, _ = await asyncio.wait([self._task], timeout=self.config.stop_grace_s)
        if done:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        requeued = await self.store.requeue_interrupted()
        log.warning(
            "the running job did not stop within %.0f s: left behind, %d job(s) stay queued",
            self.config.stop_grace_s,
            requeued,
        )

    def wake(self) -> None:
        """Something was queued: look at the store now."""
        self._wake.set()

    def cancel(self, kind: JobKind, row_id: int) -> None:
        """The job's row was deleted: if it is under way, stop it at its next check."""
        key = (kind, row_id)
        if key in self._active:
            self._cancelled.add(key)
            log.info("%s %s: deleted while running, stopping it", kind, row_id)

    def check(self, key: tuple[JobKind, int]) -> None:
        """Raise Aborted if the worker is stopping or the job `key` was deleted (any thread)."""
        if self._stopping:
            raise Aborted("the worker is stopping")
        if key in self._cancelled:
            raise Aborted(f"{key[0]} {key[1]} was deleted")

    def engine(self) -> Engine:
        """The engine, built on first use (the model itself loads on the first job)."""
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def load_model_now(self) -> None:
        """Eager mode: load the default base model before the first job (blocking)."""
        from backends.base import SDXL_BASE_TUNE_ID

        self.engine().models.get(SDXL_BASE_TUNE_ID)

    @property
    def loaded_model(self) -> int | None:
        """Base tune id of the model resident in memory; None before the first job (/healthz)."""
        loaded = self._engine.models._loaded if self._engine is not None else None
        return loaded[0] if loaded is not None else None

    @property
    def binds(self) -> int:
        """How often a tune's LoRA was bound into the model so far (`Engine.binds`; /healthz)."""
        return self._engine.binds if self._engine is not None else 0

    async def queue_position(self, prompt_id: int) -> int:
        """1 = next to run; 0 = running or finished."""
        ids = await self.store.queued_prompt_ids()
        return ids.index(prompt_id) + 1 if prompt_id in ids else 0

    def job_progress(self, kind: JobKind, row: Row) -> tuple[float | None, str | None]:
        """How far the job is (0..1) and when it should end; None: not under way here."""
        key = (kind, row["id"])
        return self.progress.fraction.get(key), self.progress.eta.get(key)

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                job = await self.schedule.next_job()
                if job is None:
                    await self._idle(IDLE_POLL_S)
                    continue
                kind, row_id = job
                try:
                    if kind == JobKind.PROMPT:
                        await self._run_prompt(row_id)
                    else:
                        await self._run_tune(row_id)
                except Exception as exc:  # a bug must not kill the runner, nor loop forever
                    log.exception("%s %s crashed the runner", kind, row_id)
                    await self._fail_broken_job(kind, row_id, exc)
                    raise
            except Exception:  # the store itself fails (disk full ...): wait, then retry
                failures += 1
                await self._idle(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1)))
            else:
                failures = 0

    async def _idle(self, seconds: float) -> None:
        """Wait `seconds`, or less if woken (a new job, stop())."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _fail_broken_job(self, kind: JobKind, row_id: int, exc: Exception) -> None:
        """Mark a job that crashed the runner failed, so the next pick is another job."""
        error = f"internal error in the worker ({type(exc).__name__}); please try again"
        try:
            if kind == JobKind.PROMPT:
                await self._finish_prompt(row_id, error=error)
            else:
                await self._finish_tune(row_id, error=error)
        except Exception:
            log.exception("%s %s: could not even be marked failed", kind, row_id)

    async def _run_prompt(self, prompt_id: int) -> None:
        row = await self.store.get_prompt(prompt_id)
        if row is None or row["state"] != JobState.QUEUED:
            return
        params = PromptParams.from_json(row["params"])
        try:
            job = await self._prompt_job(row, params)
        except GenerationError as exc:
            await self._finish_prompt(prompt_id, error=exc.user_message)
            return
        await self.store.update_prompt(prompt_id, state=JobState.RUNNING, started_at=now_iso())
        key = (JobKind.PROMPT, prompt_id)
        self._begin(key)
        log.info("prompt %s: %d image(s) %dx%d", prompt_id, params.num_images, params.w, params.h)
        try:
            images, scores = await run_in_daemon_thread(self._generate_and_save, job, key)
            fault_at(FaultPoint.PROMPT_GENERATED)
        except Aborted:
            if await self.store.get_prompt(prompt_id) is None:
                self._drop_files(JobKind.PROMPT, prompt_id)
                log.info("prompt %s: deleted, stopped", prompt_id)
            else:
                await self.store.update_prompt(prompt_id, state=JobState.QUEUED)
                log.info("prompt %s: interrupted, stays queued", prompt_id)
        except GenerationError as exc:
            await self._finish_prompt(prompt_id, error=exc.user_message)
        except Exception as exc:
            log.exception("prompt %s failed", prompt_id)
            await self._finish_prompt(prompt_id, error=f"generation failed: {exc}")
        else:
            await self._finish_prompt(prompt_id, images=images, scores=scores)
        finally:
            self._end(key)

    async def _prompt_job(self, row: Row, params: PromptParams) -> PromptJob:
        """Resolve the base model and the tune folder; the tune may be gone since acceptance."""
        base_id = row["tune_id"]
        lora_id = params.lora_tune_id
        if base_id not in self.config.base_models():
            tune = await self.store.get_tune(base_id)
            if tune is None:
                raise GenerationError(f"tune {base_id} no longer exists")
            lora_id = lora_id or base_id
            base_id = tune["base_tune_id"]
        if lora_id is None:
            return PromptJob(row["id"], params, base_id, None)
        tune = await self.store.get_tune(lora_id)
        tune_dir = self.config.tunes_dir / str(lora_id)
        if tune is None or tune["state"] != JobState.DONE or not has_artefacts(tune_dir):
            raise GenerationError(f"tune {lora_id} is not trained (or was deleted)")
        photos = tuple(self.config.files_dir / path for path in tune["images"])
        return PromptJob(row["id"], params, base_id, tune_dir, photos)

    def _generate_and_save(
        self, job: PromptJob, key: tuple[JobKind, int]
    ) -> tuple[list[str], dict[str, Any] | None]:
        """Runs in the worker thread: generate; each PNG is encoded and written on a
        background thread as soon as its image is final; returns relative paths, and the
        best-of scores when OVERGENERATE is on (the kept images only, best first)."""
        folder = Path(JobKind.PROMPT.table) / str(job.prompt_id)
        (self.config.files_dir / folder).mkdir(parents=True, exist_ok=True)
        stamp = secrets.token_hex(8)  # unguessable names: file URLs are capabilities
        writer = PngWriter(self.config.accel.png_compress_level)
        paths: dict[int, str] = {}

        def on_image(index: int, image: Any) -> None:
            rel = folder / f"{stamp}-{index}.png"
            writer.submit(image, self.config.files_dir / rel)
            paths[index] = rel.as_posix()

        def progress(fraction: float) -> None:
            self.check(key)
            self.progress.note(key, fraction)

        scores = None
        try:
            if self.config.overgenerate > 1:  # best-of (issue 15): choose, then write
                best = self._best_of().run(self.engine(), job, progress)
                for index, image in enumerate(best.images):
                    on_image(index, image)
                images, scores = best.images, best.to_json()
            else:
                images = self.engine().run_prompt(job, progress, on_image)
        finally:
            writer.wait()
        return [paths[i] for i in range(len(images))], scores

    def _best_of(self) -> BestOfSelector:
        if self._selector is None:
            self._selector = BestOfSelector.for_worker(self.config)
        return self._selector

    async def _finish_prompt(
        self,
        prompt_id: int,
        *,
        images: list[str] | None = None,
        error: str | None = None,
        scores: dict[str, Any] | None = None,
    ) -> None:
        if await self.store.get_prompt(prompt_id) is None:  # deleted while running
            self._drop_files(JobKind.PROMPT, prompt_id)
            return
        if error is not None:
            log.warning("prompt %s failed: %s", prompt_id, error)
            await self.store.update_prompt(
                prompt_id, state=JobState.FAILED, user_error=error, finished_at=now_iso()
            )
        else:
            await self.store.update_prompt(
                prompt_id,
                state=JobState.DONE,
                images=images or [],
                finished_at=now_iso(),
                scores=scores,
            )
        await self._send_callback(JobKind.PROMPT, prompt_id)
        await self.runs.prompt_ended(prompt_id)

    # -- training ------------------------------------------------------------------------

    async def _run_tune(self, tune_id: int) -> None:
        row = await self.store.get_tune(tune_id)
        if row is None or row["state"] != JobState.QUEUED:
            return
        await self.store.update_tune(tune_id, state=JobState.RUNNING, started_training_at=now_iso())
        key = (JobKind.TUNE, tune_id)
        self._begin(key)
        job = TrainJob(
            tune_id=tune_id,
            token=row["token"],
            class_word=row["name"],
            base_tune_id=row["base_tune_id"],
            base_model=self.config.base_models().get(row["base_tune_id"], ""),
            images=[self.config.files_dir / p for p in row["images"]],
            steps=row["steps"],
            face_crop=None if row["face_crop"] is None else bool(row["face_crop"]),
            out_dir=self.config.tunes_dir / str(tune_id),
            device=self.config.device,
            config_dir=self.config.sdxl_config_dir,
        )
        self._turns = TrainingTurns(self.config.training_share)
        ctx = train.TrainContext(
            between_steps=lambda f: self._between_steps(key, f),
            check=lambda: self.check(key),
        )
        try:
            await run_in_daemon_thread(self._trainer, job, ctx)
        except Aborted:
            if await self.store.get_tune(tune_id) is None:
                self._drop_files(JobKind.TUNE, tune_id)
                log.info("tune %s: deleted, training stopped", tune_id)
            else:
                await self.store.update_tune(
                    tune_id, state=JobState.QUEUED, started_training_at=None
                )
                log.info("tune %s: interrupted, stays queued", tune_id)
        except TrainerUnavailable as exc:
            log.error("tune %s cannot train: %s", tune_id, exc)
            await self._finish_tune(tune_id, error=exc.user_message)
        except TrainingFailed as exc:  # the user's photos or request: one line, no stack trace
            log.warning("tune %s failed: %s", tune_id, exc.user_message)
            await self._finish_tune(tune_id, error=exc.user_message)
        except Exception as exc:
            log.exception("tune %s failed", tune_id)
            await self._finish_tune(tune_id, error=f"training failed: {exc}")
        else:
            if has_artefacts(job.out_dir):
                await self._finish_tune(tune_id)
            else:
                await self._finish_tune(tune_id, error="training wrote no model files")
        finally:
            self._end(key)

    def _begin(self, key: tuple[JobKind, int]) -> None:
        self._active.append(key)
        self.progress.begin(key)

    def _end(self, key: tuple[JobKind, int]) -> None:
        self._active.remove(key)
        self._cancelled.discard(key)
        self.progress.end(key)

    def _drop_files(self, kind: JobKind, row_id: int) -> None:
        """What a deleted job left: a prompt's images, a tune's model folder."""
        if kind == JobKind.PROMPT:
            shutil.rmtree(self.config.files_dir / kind.table / str(row_id), ignore_errors=True)
        else:
            shutil.rmtree(self.config.tunes_dir / str(row_id), ignore_errors=True)

    def _between_steps(self, key: tuple[JobKind, int], fraction: float) -> None:
        """Called by the trainer (in its thread) after each step: run queued prompts first,
        unless the training is owed its share (fair_share.py)."""
        self.progress.note(key, fraction)
        self._turns.step_done()
        self.check(key)
        assert self._loop is not None
        try:
            while not self._turns.training_owed():
                prompt_id = asyncio.run_coroutine_threadsafe(
                    self.schedule.next_prompt(), self._loop
                ).result()
                if prompt_id is None:
                    self._turns.no_prompt_waiting()
                    return
                started = time.monotonic()
                asyncio.run_coroutine_threadsafe(self._run_prompt(prompt_id), self._loop).result()
                self._turns.prompt_served(time.monotonic() - started)
                self.check(key)  # stopped, or the tune deleted, while the prompt ran
        finally:
            self._turns.resume()

    async def _finish_tune(self, tune_id: int, *, error: str | None = None) -> None:
        if await self.store.get_tune(tune_id) is None:  # deleted while it trained
            self._drop_files(JobKind.TUNE, tune_id)
            return
        if error is not None:
            await self.store.update_tune(tune_id, state=JobState.FAILED, error=error)
            for prompt in await self.store.prompts_using_tune(tune_id):  # waiting for it
                await self._finish_prompt(prompt["id"], error=f"the tune failed: {error}")
        else:
            await self.store.update_tune(tune_id, state=JobState.DONE, trained_at=now_iso())
        await self._send_callback(JobKind.TUNE, tune_id)

    # -- callbacks -----------------------------------------------------------------------

    async def _send_callback(self, kind: JobKind, row_id: int) -> None:
        tune = kind == JobKind.TUNE
        row = await self.store.get_row(kind, row_id)
        if row is None:
            return
        url = row["callback"] if tune else row["params"].get("callback")
        if not url or not await self.store.claim_callback(kind, row_id):
            return
        base = self.config.public_url or row["origin"] or ""
        body = {kind.value: tune_json(row, base) if tune else prompt_json(row, base)}
        self._post_later(url, body)

    def _post_later(self, url: str, body: Any) -> None:
        task = asyncio.create_task(self._post(url, body))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post(self, url: str, body: Any) -> None:
        assert self._http is not None
        try:
            response = await self._http.post(url, json=body)
            log.info("callback %s -> %s", _no_query(url), response.status_code)
        except httpx.HTTPError as exc:  # no retry, as Astria: clients poll as well
            log.warning("callback %s failed: %s", _no_query(url), exc)

    def _default_engine(self) -> Engine:
        return build_engine(self.config)


def build_engine(config: WorkerConfig) -> Engine:
    """The real engine for `config` (its model loads on first use); the fleet's GPU worker
    builds the same."""
    return Engine(
        ModelCache(
            config.base_models(),
            config.device,
            config.accel,
            config_dir=config.sdxl_config_dir,
        ),
        sr_scale=config.sr_scale,
        upscaler_model=config.upscaler_model,
    )


def _no_query(url: str) -> str:
    """Callback URLs carry a secret, in the query or (the bot's) in the path: only the scheme
    and host reach the log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
