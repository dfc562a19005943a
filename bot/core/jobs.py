"""The job tracker: drives every tune and generation from "asked" to "delivered".

Callbacks are hints, polling is the truth (hosted callbacks get lost: a proxy, a redeploy).
Each unfinished job has one asyncio task that submits it if needed, polls the backend with
backoff, wakes early when a callback arrives, downloads the results into `DATA_DIR`, and
hands them to the notifier of the platform that asked. All state is in the store, so
`start()` after a restart resumes every job whose result has not been delivered yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from backends.base import (
    SDXL_BASE_TUNE_ID,
    AuthError,
    Backend,
    BackendError,
    NotFoundError,
    Prompt,
    PromptRequest,
    RateLimitError,
    TrainingImage,
    Tune,
    TuneRequest,
    ValidationError,
)
from bot.core.errors import backend_problem
from bot.core.ledger import Ledger
from bot.core.photo_set import characteristics
from bot.core.records import (
    Delivery,
    GenerationRecord,
    GenerationState,
    JobKind,
    ShootRecord,
    TuneRecord,
    TuneState,
)
from bot.core.shoot_jobs import ShootDriver
from bot.core.shoot_store import ShootStore
from bot.core.store import Store, utcnow
from bot.core.texts import languages, text
from bot.logs import job_context

log = logging.getLogger(__name__)
T = TypeVar("T")
JobKey = tuple[JobKind, int]

MAX_BACKOFF_FACTOR = 16
MAX_SUBMITTING = 4
"""Creates (a prompt, or a tune with its photos) sent to the backend at once; the rest wait
their turn here, their status message already out. A slot is held for one attempt only:
look-ups and backoff waits hold none, so a refused job never holds up the others. A burst
of /imagine and reroll presses then reaches the image service as a steady stream (Astria
answers heavy use with 429), and the bot's CPU goes to answering chats first: in
bench/telegram_load.py's burst this took the last reply from ~2 s to ~1.2 s."""
DELIVERY_GRACE_S = 10.0
"""On stop, a job that is sending its result gets this long to finish: a result sent again
after the restart is worse than a slower stop. Jobs that only poll stop at once."""


class Notifier(Protocol):
    """What a chat frontend offers the tracker. Each method must be safe to call again."""

    def status_edit_interval(self, delivery: Delivery) -> float:
        """Minimum seconds between edits of one status message (groups want fewer)."""
        ...

    async def update_status(self, delivery: Delivery, text: str) -> str | None:
        """Create the job's status message, or edit it when `delivery.status_message_id` is set.

        Returns the status message id (None when the platform has no such thing).
        """
        ...

    async def send_text(self, delivery: Delivery, text: str) -> None:
        """Send a new message into the delivery's chat (completions, failures)."""
        ...

    async def send_images(
        self, delivery: Delivery, generation: GenerationRecord, files: Sequence[Path]
    ) -> None:
        """Post a finished generation's images into the chat, replying where it was asked."""
        ...


@dataclass(frozen=True)
class TrackerConfig:
    poll_interval_s: float = 10.0
    public_url: str | None = None
    default_language: str = languages.SOURCE_LANGUAGE
    """DEFAULT_LANGUAGE, for job news to users whose platform language the bot doesn't speak."""


class JobTracker:
    """Runs one task per unfinished job; see the module docstring."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: TrackerConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ledger: Ledger | None = None,
        after_trained: Callable[[int], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._after_trained = after_trained
        """Called with a tune's id once it is trained (retention.py drops its photos)."""
        self._ledger = ledger
        """Where a job's credit hold is settled when it ends (None: nothing is charged)."""
        self._backend = backend
        self._config = config
        self._sleep = sleep
        self._notifiers: dict[str, Notifier] = {}
        self._tasks: dict[JobKey, asyncio.Task[None]] = {}
        self._wakeups: dict[JobKey, asyncio.Event] = {}
        self._last_status_edit: dict[JobKey, float] = {}  # (kind, job id) -> time
        self._stopping = False
        # Jobs recorded by this process and not yet sent: their first create needs no look-up.
        # Anything else (resumed, or retried after an unclear failure) is looked up first.
        self._fresh: set[JobKey] = set()
        # What a fresh generation's task needs first, handed over instead of read back.
        self._recorded: dict[JobKey, tuple[GenerationRecord, Delivery]] = {}
        self._delivering: set[JobKey] = set()
        self._submitting = asyncio.Semaphore(MAX_SUBMITTING)
        self.shoots = ShootDriver(self, ShootStore(store))
        """Shoots (packs run on a model): their part of the tracker, bot/core/shoot_jobs.py."""

    def register_notifier(self, platform: str, notifier: Notifier) -> None:
        self._notifiers[platform] = notifier

    async def start(self) -> None:
        """Settle the holds of jobs that ended before a restart (`Ledger.reconcile`), then
        resume every job whose result has not been delivered yet."""
        self._stopping = False
        if self._ledger is not None:
            await self._ledger.reconcile()
        for delivery in await self._store.undelivered():
            self._spawn(delivery.job_kind, delivery.job_id)

    async def stop(self) -> None:
        """Cancel the tasks; their jobs stay in the store and resume on the next start.

        New jobs are not started any more (they stay recorded); a job delivering its result
        gets DELIVERY_GRACE_S to finish first. Safe to call twice."""
        self._stopping = True
        finishing = [task for key, task in self._tasks.items() if key in self._delivering]
        if finishing:
            log.info("waiting for %d job(s) delivering their results", len(finishing))
            await asyncio.wait(finishing, timeout=DELIVERY_GRACE_S)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def track_tune(self, tune_id: int) -> None:
        """Track a tune the service just recorded (so it cannot exist on the backend yet)."""
        self._fresh.add((JobKind.TUNE, tune_id))
        self._spawn(JobKind.TUNE, tune_id)

    def track_generation(self, generation: GenerationRecord, delivery: Delivery) -> None:
        """Track a generation the service just recorded, as recorded: its task starts from
        these records instead of reading them back (two trips to the database on the
        costliest path of a busy bot, every /imagine and button press)."""
        key = (JobKind.GENERATION, generation.id)
        self._fresh.add(key)
        self._recorded[key] = (generation, delivery)
        self._spawn(*key)
        if key not in self._tasks:  # not started (stopping): it is read back when resumed
            self._recorded.pop(key, None)

    def track_shoot(self, shoot_id: int) -> None:
        """Track a shoot the service just recorded."""
        self._fresh.add((JobKind.SHOOT, shoot_id))
        self._spawn(JobKind.SHOOT, shoot_id)

    async def stop_job(self, kind: JobKind, job_id: int) -> None:
        """Stop tracking a job and wait until its task has really stopped."""
        task = self._tasks.pop((kind, job_id), None)
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._drop_job_state((kind, job_id))

    async def cancel(self, kind: JobKind, job_id: int) -> None:
        """Stop a job, delete it on the backend (even one created a moment ago), close it."""
        if kind == JobKind.SHOOT:
            await self.shoots.cancel(job_id)
            return
        await self.stop_job(kind, job_id)
        try:
            await self.delete_remote(kind, job_id)
        except BackendError as exc:
            log.warning(
                "cancelled %s %s could not be deleted on the backend: %s", kind, job_id, exc
            )
        if kind == JobKind.TUNE:
            await self._store.update_tune(job_id, state=TuneState.CANCELLED)
        else:
            await self._store.update_generation(job_id, state=GenerationState.CANCELLED)
        await self._settle(kind, job_id, capture=False)
        delivery = await self._store.get_delivery(kind, job_id)
        if delivery is not None:
            await self._store.mark_delivered(delivery.id)

    async def delete_remote(self, kind: JobKind, job_id: int) -> None:
        """Delete the job's tune or prompt on the backend; one that is gone already is fine."""
        if kind == JobKind.SHOOT:  # only /delete comes here for a shoot: nothing may stay
            await self.shoots.delete_remote(job_id, finished_too=True)
            return
        try:
            if kind == JobKind.TUNE:
                tune = await self._store.get_tune(job_id)
                if tune and (remote_id := await self._remote_tune_id(tune)) is not None:
                    await self._backend.delete_tune(remote_id)
            else:
                generation = await self._store.get_generation(job_id)
                if generation and (remote_id := await self._remote_prompt_id(generation)):
                    await self._backend.delete_prompt(remote_id)
        except NotFoundError:
            pass

    async def _remote_tune_id(self, tune: TuneRecord) -> int | None:
        if tune.backend_id is not None:
            return tune.backend_id
        remote = await self._find_remote_tune(tune)
        return remote.id if remote else None

    async def _remote_prompt_id(self, generation: GenerationRecord) -> int | None:
        if generation.backend_id is not None:
            return generation.backend_id
        remote = await self._find_remote_prompt(generation)
        return remote.id if remote else None

    async def wake(self, kind: JobKind, job_id: int, secret: str) -> bool:
        """A callback arrived: check its secret, then make the job poll now."""
        if kind == JobKind.TUNE:
            job: TuneRecord | GenerationRecord | ShootRecord | None = await self._store.get_tune(
                job_id
            )
        elif kind == JobKind.SHOOT:
            job = await self.shoots.shoots.get(job_id)
        else:
            job = await self._store.get_generation(job_id)
        # Bytes: compare_digest refuses str with non-ASCII characters (any URL can carry them).
        given = secret.encode("utf-8", "replace")
        if job is None or not secrets.compare_digest(job.callback_secret.encode(), given):
            return False
        self._wakeup(kind, job_id).set()
        return True

    def has_jobs(self) -> bool:
        return bool(self._tasks)

    async def wait_idle(self) -> None:
        """Wait until no job task runs (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def callback_url(self, kind: JobKind, job_id: int, secret: str) -> str | None:
        if not self._config.public_url:
            return None
        return f"{self._config.public_url.rstrip('/')}/callbacks/{kind}/{job_id}/{secret}"

    # -- tasks -------------------------------------------------------------------------------

    def _spawn(self, kind: JobKind, job_id: int) -> None:
        key = (kind, job_id)
        if self._stopping or (key in self._tasks and not self._tasks[key].done()):
            return
        runners = {
            JobKind.TUNE: self._run_tune,
            JobKind.GENERATION: self._run_generation,
            JobKind.SHOOT: self.shoots.run,
        }
        runner = runners[kind]
        task = asyncio.create_task(self._guard(kind, job_id, runner))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._forget(key, task))

    def _forget(self, key: JobKey, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
            self._drop_job_state(key)

    def _drop_job_state(self, key: JobKey) -> None:
        """What the tracker keeps per running job, dropped when the job ends or is stopped."""
        self._wakeups.pop(key, None)
        self._last_status_edit.pop(key, None)
        self._recorded.pop(key, None)

    async def _guard(
        self, kind: JobKind, job_id: int, runner: Callable[[int], Awaitable[None]]
    ) -> None:
        """Log a crash of one job instead of losing it silently; the store keeps it for later.
        (The runner starts here: a task cancelled before it ran leaves no coroutine behind.)"""
        try:
            await runner(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "job %s %s crashed; it resumes on the next start",
                kind,
                job_id,
                extra=job_context(kind, job_id),
            )

    @contextlib.contextmanager
    def _delivering_phase(self, kind: JobKind, job_id: int) -> Iterator[None]:
        """Marks the job as sending its result, which `stop` lets finish."""
        key = (kind, job_id)
        self._delivering.add(key)
        try:
            yield
        finally:
            self._delivering.discard(key)

    def _wakeup(self, kind: JobKind, job_id: int) -> asyncio.Event:
        return self._wakeups.setdefault((kind, job_id), asyncio.Event())

    async def _pause(self, kind: JobKind, job_id: int, seconds: float) -> None:
        """Sleep until the next poll, or less when a callback wakes the job."""
        event = self._wakeup(kind, job_id)
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (sleeper, waiter):
                future.cancel()
            event.clear()

    async def _with_backoff(
        self, kind: JobKind, job_id: int, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Call the backend until it answers; transient failures wait longer each time."""
        factor = 1
        while True:
            try:
                return await call()
            except (AuthError, NotFoundError, ValidationError):
                raise
            except RateLimitError as exc:
                wait = exc.retry_after or self._config.poll_interval_s * factor
            except BackendError as exc:
                wait = self._config.poll_interval_s * factor
                log.warning(
                    "%s %s: backend error %s; retrying in %.1fs",
                    kind,
                    job_id,
                    exc,
                    wait,
                    extra=job_context(kind, job_id),
                )
            factor = min(factor * 2, MAX_BACKOFF_FACTOR)
            await self._pause(kind, job_id, wait)

    # -- tunes -------------------------------------------------------------------------------

    async def _run_tune(self, tune_id: int) -> None:
        tune = await self._store.get_tune(tune_id)
        delivery = await self._store.get_delivery(JobKind.TUNE, tune_id)
        if tune is None or delivery is None:
            return
        await self._speak_to(tune.user_id)
        try:
            if tune.state == TuneState.CREATING:
                tune = await self._submit_tune(tune)
                delivery = await self._status(delivery, tune_status_text(tune))
            backend_id = tune.backend_id or 0
            while tune.state == TuneState.TRAINING:
                remote = await self._with_backoff(
                    JobKind.TUNE, tune_id, lambda: self._backend.get_tune(backend_id)
                )
                tune = await self._apply_tune(tune, remote)
                if tune.state == TuneState.TRAINING:
                    delivery = await self._status(delivery, tune_status_text(tune))
                    await self._pause(JobKind.TUNE, tune_id, self._config.poll_interval_s)
        except (AuthError, NotFoundError, ValidationError) as exc:
            tune = await self._store.update_tune(
                tune_id, state=TuneState.FAILED, error=backend_problem(exc)
            )
        with self._delivering_phase(JobKind.TUNE, tune_id):
            await self._finish_tune(tune, delivery)

    async def _submit_tune(self, tune: TuneRecord) -> TuneRecord:
        """Create the tune on the backend, or adopt the one an interrupted run already created.

        Creates are never repeated blindly: the tune's title is a UUID, so after a crash or an
        unclear failure we look it up first and only create when the backend has none.
        """

        async def find_or_create() -> Tune:
            remote = await self._find_remote_tune(tune)
            if remote is not None:
                return remote
            photos = await self._store.tune_photos(tune.id)
            images = [
                TrainingImage(
                    f"{photo.sha256[:16]}.jpg", (self._store.data_dir / photo.path).read_bytes()
                )
                for photo in photos
            ]
            request = TuneRequest(
                title=tune.title,
                name=tune.class_name,
                images=images,
                token=tune.token,
                callback=self.callback_url(JobKind.TUNE, tune.id, tune.callback_secret),
                characteristics=characteristics(photos),  # issue 15: for pack templating
            )
            shoot = await self.shoots.shoots.training_with(tune.id)
            async with self._submitting:  # one attempt: a backoff wait holds no slot
                if shoot is not None:  # train and shoot in one go: the pack run makes the tune
                    return await self.shoots.create_tune(shoot, request)
                return await self._backend.create_tune(request)

        remote = await self._with_backoff(JobKind.TUNE, tune.id, find_or_create)
        tune = await self._store.update_tune(
            tune.id, backend_id=remote.id, state=TuneState.TRAINING
        )
        log.info(
            "tune %s created on the backend as %s",
            tune.id,
            remote.id,
            extra=job_context(JobKind.TUNE, tune.id, user=tune.user_id),
        )
        return await self._apply_tune(tune, remote)

    async def _find_remote_tune(self, tune: TuneRecord) -> Tune | None:
        """Look up a tune whose id was never stored (a crash mid-create) by its UUID title."""
        if (JobKind.TUNE, tune.id) in self._fresh:
            self._fresh.discard((JobKind.TUNE, tune.id))
            return None
        return next((t for t in await self._backend.list_tunes() if t.title == tune.title), None)

    async def _apply_tune(self, tune: TuneRecord, remote: Tune) -> TuneRecord:
        if remote.failed:
            return await self._store.update_tune(
                tune.id, state=TuneState.FAILED, error=remote.error
            )
        if remote.done:
            return await self._store.update_tune(
                tune.id, state=TuneState.TRAINED, trained_at=remote.trained_at, eta=None
            )
        if remote.eta != tune.eta:
            return await self._store.update_tune(tune.id, eta=remote.eta)
        return tune

    async def _finish_tune(self, tune: TuneRecord, delivery: Delivery) -> None:
        for shoot in await self.shoots.shoots.waiting_for(tune.id):  # they start (or fail) now
            self._wakeup(JobKind.SHOOT, shoot.id).set()
        await self._speak_to(tune.user_id)  # a /language during a long training counts
        model = tune.display_name
        if tune.state == TuneState.TRAINED:
            user = await self._store.get_user(tune.user_id)
            if user is not None:
                await self._store.set_active_tune(user.id, tune.id)
            delivery = await self._status(delivery, text("tune.done", model=model), force=True)
            if await self._final_text(delivery, text("tune.ready", model=model)):
                await self._settle(JobKind.TUNE, tune.id, capture=True)
            if self._after_trained is not None:
                await self._after_trained(tune.id)
        elif tune.state == TuneState.FAILED:
            released = await self._settle(JobKind.TUNE, tune.id, capture=False)
            delivery = await self._status(delivery, text("tune.failed", model=model), force=True)
            reason = tune.error or text("error.unknown_reason")
            await self._final_text(
                delivery,
                text("tune.failed_because", model=model, reason=reason) + _released(released),
            )
        log.info(
            "tune %s finished as %s",
            tune.id,
            tune.state,
            extra=job_context(JobKind.TUNE, tune.id, user=tune.user_id),
        )

    # -- generations -------------------------------------------------------------------------

    async def _run_generation(self, generation_id: int) -> None:
        generation, delivery = self._recorded.pop((JobKind.GENERATION, generation_id), None) or (
            await self._store.get_generation(generation_id),
            await self._store.get_delivery(JobKind.GENERATION, generation_id),
        )
        if generation is None or delivery is None:
            return
        await self._speak_to(generation.user_id)
        try:
            remote: Prompt | None = None
            if generation.state == GenerationState.QUEUED:  # the create's answer: the first poll
                # The status goes out first, saying what the create usually answers: a new
                # prompt waits for a GPU. So the user hears back at once, and the answer
                # needs no edit (a DM allows one edit a second: it would be dropped anyway).
                delivery = await self._status(delivery, text("generation.queued"))
                generation, remote = await self._submit_generation(generation)
            prompt_id = generation.backend_id or 0
            while generation.state == GenerationState.SUBMITTED:
                if remote is not None:
                    delivery = await self._status(delivery, prompt_status_text(remote))
                    await self._pause(
                        JobKind.GENERATION, generation_id, self._config.poll_interval_s
                    )
                remote = await self._with_backoff(
                    JobKind.GENERATION,
                    generation_id,
                    lambda: self._backend.get_prompt(prompt_id, SDXL_BASE_TUNE_ID),
                )
                generation = await self._apply_prompt(generation, remote)
        except (AuthError, NotFoundError, ValidationError) as exc:
            generation = await self._store.update_generation(
                generation_id, state=GenerationState.FAILED, error=backend_problem(exc)
            )
        with self._delivering_phase(JobKind.GENERATION, generation_id):
            await self._finish_generation(generation, delivery)

    async def _submit_generation(
        self, generation: GenerationRecord
    ) -> tuple[GenerationRecord, Prompt]:
        """Create the prompt, or adopt the one an interrupted run created (same text and seed);
        returns the generation with that answer applied, and the answer. One submission slot
        covers a create and its record, so a burst also reaches the store at a steady pace."""

        async def submit_once() -> tuple[GenerationRecord, Prompt]:
            remote = await self._find_remote_prompt(generation)
            async with self._submitting:  # one attempt: a backoff wait holds no slot
                if remote is None:
                    request = PromptRequest(
                        text=generation.prompt_sent,
                        negative_prompt=generation.negative_prompt,
                        seed=generation.seed,
                        callback=self.callback_url(
                            JobKind.GENERATION, generation.id, generation.callback_secret
                        ),
                        **generation.options,
                    )
                    remote = await self._backend.create_prompt(SDXL_BASE_TUNE_ID, request)
                submitted = await self._store.update_generation(
                    generation.id, backend_id=remote.id, state=GenerationState.SUBMITTED
                )
            return submitted, remote

        submitted, remote = await self._with_backoff(JobKind.GENERATION, generation.id, submit_once)
        return await self._apply_prompt(submitted, remote), remote

    async def _find_remote_prompt(self, generation: GenerationRecord) -> Prompt | None:
        """Look up a prompt whose id was never stored (newest first): same text, seed and
        options, and not already another generation's (a "more like #1" repeats the text and
        seed of its original)."""
        if (JobKind.GENERATION, generation.id) in self._fresh:
            self._fresh.discard((JobKind.GENERATION, generation.id))
            return None
        wanted = {"seed": generation.seed, **generation.options}
        for remote in await self._backend.list_prompts(SDXL_BASE_TUNE_ID):
            same = remote.text == generation.prompt_sent and all(
                remote.raw.get(key, value) == value for key, value in wanted.items()
            )
            if same and not await self._store.generation_by_backend_id(remote.id):
                return remote
        return None

    async def _apply_prompt(self, generation: GenerationRecord, remote: Prompt) -> GenerationRecord:
        if remote.failed:
            return await self._store.update_generation(
                generation.id, state=GenerationState.FAILED, error=remote.user_error
            )
        if not remote.done:
            return generation
        folder = self._store.generation_folder(generation.id)
        files = await self._download(JobKind.GENERATION, generation.id, remote.images, folder)
        return await self._store.update_generation(
            generation.id, state=GenerationState.DONE, result_files=files
        )

    async def _download(
        self,
        kind: JobKind,
        job_id: int,
        urls: Sequence[str],
        folder: Path,
        prefix: int | None = None,
    ) -> list[str]:
        """Fetch a job's images into `folder` (`1.png`, or `<prefix>-1.png`); their paths
        relative to DATA_DIR, as the store keeps them."""
        files = []
        folder.mkdir(parents=True, exist_ok=True)
        for index, url in enumerate(urls, start=1):
            content = await self._with_backoff(
                kind, job_id, lambda url=url: self._backend.download(url)
            )
            name = f"{index}" if prefix is None else f"{prefix}-{index}"
            path = folder / f"{name}{_image_suffix(content)}"
            await asyncio.to_thread(path.write_bytes, content)
            files.append(str(path.relative_to(self._store.data_dir)))
        return files

    async def _finish_generation(self, generation: GenerationRecord, delivery: Delivery) -> None:
        notifier = self._notifiers.get(delivery.platform)
        if generation.state == GenerationState.DONE:
            delivery = await self._status(delivery, text("generation.done"), force=True)
            if notifier is None:
                log.warning(
                    "no %s frontend running; generation %s waits", delivery.platform, generation.id
                )
                return
            files = [self._store.data_dir / name for name in generation.result_files]
            await notifier.send_images(delivery, generation, files)
            await self._store.mark_delivered(delivery.id)
            await self._settle(JobKind.GENERATION, generation.id, capture=True)
        elif generation.state == GenerationState.FAILED:
            released = await self._settle(JobKind.GENERATION, generation.id, capture=False)
            delivery = await self._status(delivery, text("generation.failed"), force=True)
            reason = generation.error or text("error.unknown_reason")
            await self._final_text(
                delivery, text("generation.failed_because", reason=reason) + _released(released)
            )
        log.info(
            "generation %s finished as %s",
            generation.id,
            generation.state,
            extra=job_context(JobKind.GENERATION, generation.id, user=generation.user_id),
        )

    # -- chat side ---------------------------------------------------------------------------

    async def _speak_to(self, user_id: int) -> None:
        """The job's task speaks its owner's language: their /language choice, else their
        platform's, else the default. Read when the task starts (after a restart too) and
        again before a training's news, so a /language meanwhile counts."""
        user = await self._store.get_user(user_id)
        chosen, platform = (user.language, user.platform_language) if user else (None, None)
        languages.set_language(languages.pick(chosen, platform, self._config.default_language))

    async def _status(self, delivery: Delivery, text: str, *, force: bool = False) -> Delivery:
        """Edit the job's status message when its text changed, at most once per interval;
        returns the delivery as it is now. Only this writes the status fields, and each job
        has one task, so the task's copy is the truth (read from the store at its start); the
        store gets a status message's id and its first text, once per message (a busy bot
        edits thousands of status messages a minute: one write each held up every other
        write)."""
        notifier = self._notifiers.get(delivery.platform)
        last = self._last_status_edit.get((delivery.job_kind, delivery.job_id))
        # The stored text of a message is its first: what it shows now is known only after
        # this process edited it (or where no message is edited, the console's lines).
        known = last is not None or delivery.status_message_id is None
        shown = delivery.status_text if known else None
        if notifier is None or shown == text:
            return delivery
        now = asyncio.get_running_loop().time()
        if not force and last is not None and now - last < notifier.status_edit_interval(delivery):
            return delivery
        try:
            message_id = await notifier.update_status(delivery, text)
        except Exception:
            log.warning(
                "status update for %s %s failed", delivery.job_kind, delivery.job_id, exc_info=True
            )
            return delivery
        self._last_status_edit[(delivery.job_kind, delivery.job_id)] = now
        # An edit in place needs no write: after a restart the stored text differs at worst,
        # and costs one edit more. Without a message (the console's status lines) the text is
        # all a resumed job can compare with, so it is stored each time, as it changes.
        if message_id is None or message_id != delivery.status_message_id:
            await self._store.set_status_message(delivery.id, message_id, text)
        return dataclasses.replace(delivery, status_message_id=message_id, status_text=text)

    async def _final_text(self, delivery: Delivery, text: str) -> bool:
        """Send a job's closing message once; an absent frontend leaves it for the next start
        (False)."""
        notifier = self._notifiers.get(delivery.platform)
        if notifier is None:
            return False
        await notifier.send_text(delivery, text)
        await self._store.mark_delivered(delivery.id)
        return True

    async def _settle(self, kind: JobKind, job_id: int, *, capture: bool) -> int:
        """Capture the job's hold (delivered) or release it (failed, cancelled); returns the
        credits given back. Safe to repeat: a hold is settled once."""
        if self._ledger is None:
            return 0
        return await self._ledger.settle(kind, job_id, capture=capture)


def _released(credits: int) -> str:
    """The sentence that tells a user a failed job cost nothing (when it held credits)."""
    return " " + text("credits.released", count=credits) if credits else ""


def tune_status_text(tune: TuneRecord) -> str:
    model = tune.display_name
    if tune.state == TuneState.CREATING:
        return text("tune.uploading", model=model)
    if tune.eta is None:
        return text("tune.in_progress", model=model)
    minutes = max(0, round((tune.eta - utcnow()).total_seconds() / 60))
    if minutes == 0:
        return text("tune.almost_done", model=model)
    return text("tune.minutes_left", model=model, minutes=minutes)


def prompt_status_text(prompt: Prompt) -> str:
    progress = prompt.raw.get("progress")
    if prompt.started_training_at is None and not progress:
        return text("generation.queued")
    if isinstance(progress, int | float) and 0 < progress <= 1:
        return text("generation.progress", progress=progress)
    return text("generation.running")


def _image_suffix(content: bytes) -> str:
    if content.startswith(b"\x89PNG"):
        return ".png"
    if content.startswith(b"\xff\xd8"):
        return ".jpg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return ".webp"
    return ".img"
