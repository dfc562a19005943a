"""The tracker's part for shoots (issue 14): a pack run on one model, from "asked" to the ZIP.

A shoot waits while its model trains, then runs the pack on the backend (`run_pack` with the
model's tune id), records the prompts the run made (its shots), polls them, and hands each
finished shot's images to the chat as they come: one status message is edited ("Corporate
headshots: 12 of 28 ready"), each image is sent once (a shot is marked delivered after the
chat took it) and captures its credit hold; at the end one ZIP of every image goes out and
what never came is released. Everything is in the store, so a restart resumes a shoot where
it was. It uses the tracker's machinery (status edits, backoff, wake-ups, settlement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from backends.base import (
    AuthError,
    Backend,
    BackendError,
    NotFoundError,
    PackRunRequest,
    Prompt,
    ServerError,
    Tune,
    TuneRequest,
    ValidationError,
)
from bot.core import archives
from bot.core.errors import backend_problem
from bot.core.records import (
    TUNE_GAVE_UP,
    Delivery,
    JobKind,
    ShootRecord,
    ShootState,
    Shot,
    ShotState,
    TuneState,
)
from bot.core.shoot_store import ShootStore
from bot.core.store import Store
from bot.core.texts import text
from bot.logs import job_context

if TYPE_CHECKING:
    from bot.core.jobs import JobTracker

log = logging.getLogger(__name__)
SHOOT = JobKind.SHOOT
ENDED = (ShootState.DONE, ShootState.FAILED)
"""Ended, with the closing message perhaps still owed (a restart sends it)."""
DELIVERY_GRACE_S = 10.0
"""How long a cancel waits for images being sent to finish (as the tracker's stop does)."""
DELIVERING_CHECK_S = 0.05


@dataclass(frozen=True)
class ShotFiles:
    """One finished shot and its images as stored, ready for the chat."""

    shot: Shot
    number: int
    """The shot's place in its shoot (1, 2 ...), for buttons that name it."""
    files: tuple[Path, ...]


class ShootNotifier(Protocol):
    """What a chat frontend offers for shoots, beside the tracker's Notifier."""

    def archive_limit_bytes(self, delivery: Delivery) -> int:
        """The largest file the platform takes in that chat: the ZIP is cut to fit."""
        ...

    async def send_shots(
        self, delivery: Delivery, shoot: ShootRecord, shots: Sequence[ShotFiles]
    ) -> None:
        """Post finished shots' images (grouped as the platform allows), each with its like
        and "more like this" buttons. Safe to call again after a restart."""
        ...

    async def send_archive(
        self, delivery: Delivery, shoot: ShootRecord, parts: Sequence[Path]
    ) -> None:
        """Post the ZIP (in parts) of every image of the shoot."""
        ...


def progress_text(shoot: ShootRecord, ready: int) -> str:
    return text("shoot.progress", title=shoot.pack_title, ready=ready, count=shoot.num_images)


class ShootDriver:
    """Drives shoots for a JobTracker (see the module docstring)."""

    def __init__(self, tracker: JobTracker, shoots: ShootStore) -> None:
        self._tracker = tracker
        self.shoots = shoots
        self._adopting: dict[tuple[int, int], asyncio.Lock] = {}
        """Per (backend tune, pack): a run's prompts are found as "the pack's prompts on the
        tune no shoot owns", so two shoots of one pack on one model run, find and record
        theirs one after the other; else the first takes both runs' prompts."""

    @property
    def _store(self) -> Store:
        return self._tracker._store

    @property
    def _backend(self) -> Backend:
        return self._tracker._backend

    async def create_tune(self, shoot: ShootRecord, request: TuneRequest) -> Tune:
        """Train-and-shoot: the tune created by running the pack with the photos (the Astria
        way, `POST /p/:id/tunes`), so the pack's prompts run as soon as it is trained."""
        run = await self._backend.run_pack(
            shoot.pack_id,
            PackRunRequest(
                title=request.title,
                name=request.name,
                images=request.images,
                callback=request.callback,
                prompts_callback=self._tracker.callback_url(SHOOT, shoot.id, shoot.callback_secret),
            ),
        )
        if run.tune is None:
            raise ServerError(text("shoot.no_prompts"))
        return run.tune

    # -- the job -----------------------------------------------------------------------------

    async def run(self, shoot_id: int) -> None:
        tracker = self._tracker
        shoot = await self.shoots.get(shoot_id)
        delivery = await self._store.get_delivery(SHOOT, shoot_id)
        if shoot is None or delivery is None:
            return
        # Done before a restart: its ZIP went out (the state follows it). Failed: a refusal
        # writes that before the ZIP, and the finish only fails a shoot with nothing to zip.
        zip_it = shoot.state != ShootState.DONE
        await tracker._speak_to(shoot.user_id)
        try:
            if shoot.state == ShootState.TRAINING:  # its prompts come with the tune: adopt
                tracker._fresh.discard((SHOOT, shoot_id))
            if shoot.state in (ShootState.WAITING, ShootState.TRAINING):
                shoot, delivery = await self._wait_for_model(shoot, delivery)
            if shoot.state == ShootState.SUBMITTING:
                shoot = await self._submit(shoot)
            while shoot.state == ShootState.RUNNING:
                shots = await self._poll(shoot)
                delivery = await self._deliver_ready(shoot, delivery, shots)
                if all(shot.state != ShotState.RUNNING for shot in shots):
                    break
                await tracker._pause(SHOOT, shoot_id, tracker._config.poll_interval_s)
        except (AuthError, NotFoundError, ValidationError) as exc:
            shoot = await self.shoots.update(
                shoot_id, state=ShootState.FAILED, error=backend_problem(exc)
            )
        with tracker._delivering_phase(SHOOT, shoot_id):
            await self._finish(shoot, delivery, zip_it=zip_it)

    async def _wait_for_model(
        self, shoot: ShootRecord, delivery: Delivery
    ) -> tuple[ShootRecord, Delivery]:
        """A shoot asked for while its model trains starts when the training ends."""
        while True:
            tune = await self._store.get_tune(shoot.tune_id)
            if tune is None or tune.state in TUNE_GAVE_UP:
                error = text("shoot.model_gone")
                return await self.shoots.update(
                    shoot.id, state=ShootState.FAILED, error=error
                ), delivery
            if tune.state == TuneState.TRAINED:
                return await self.shoots.update(shoot.id, state=ShootState.SUBMITTING), delivery
            waiting = text("shoot.waiting", title=shoot.pack_title, model=tune.display_name)
            delivery = await self._tracker._status(delivery, waiting)
            await self._tracker._pause(SHOOT, shoot.id, self._tracker._config.poll_interval_s)

    async def _submit(self, shoot: ShootRecord) -> ShootRecord:
        """Run the pack on the model, or adopt the run an interrupted attempt made: the pack's
        prompts on that tune that no shoot owns yet."""
        tracker = self._tracker
        tune = await self._store.get_tune(shoot.tune_id)
        tune_id = tune.backend_id if tune else None
        if tune_id is None:
            raise NotFoundError(text("shoot.model_gone"))
        fresh = (SHOOT, shoot.id) in tracker._fresh  # recorded here, never sent: no look-up
        tracker._fresh.discard((SHOOT, shoot.id))

        async def find_or_run() -> list[Prompt]:
            nonlocal fresh
            found = [] if fresh else await self._unowned_prompts(shoot, tune_id)
            fresh = False  # a retry after an unclear failure looks up first
            if found:
                return found
            request = PackRunRequest(
                tune_ids=[tune_id],
                prompts_callback=tracker.callback_url(SHOOT, shoot.id, shoot.callback_secret),
            )
            async with tracker._submitting:
                run = await self._backend.run_pack(shoot.pack_id, request)
            return list(run.prompts) or await self._unowned_prompts(shoot, tune_id)

        async with self._adoption(tune_id, shoot):
            prompts = await tracker._with_backoff(SHOOT, shoot.id, find_or_run)
            if not prompts:
                raise ValidationError(text("shoot.no_prompts"))
            shots = [(p.id, p.text, _num_images(p)) for p in prompts]
            await self.shoots.add_shots(shoot.id, shots)
        log.info(
            "shoot %s runs %d prompts on tune %s",
            shoot.id,
            len(prompts),
            tune_id,
            extra=job_context(SHOOT, shoot.id, user=shoot.user_id),
        )
        return await self.shoots.update(shoot.id, state=ShootState.RUNNING)

    def _adoption(self, tune_id: int, shoot: ShootRecord) -> asyncio.Lock:
        return self._adopting.setdefault((tune_id, shoot.pack_id), asyncio.Lock())

    async def _unowned_prompts(self, shoot: ShootRecord, tune_id: int) -> list[Prompt]:
        listed = await self._backend.list_prompts(tune_id)
        mine = [p for p in listed if p.pack_id == shoot.pack_id]
        owned = await self.shoots.known_backend_ids([p.id for p in mine])
        return sorted((p for p in mine if p.id not in owned), key=lambda p: p.id)

    async def _poll(self, shoot: ShootRecord) -> list[Shot]:
        """Each running shot as the backend has it now (one list call per round), its images
        downloaded when it is done."""
        shots = await self.shoots.shots(shoot.id)
        running = [shot for shot in shots if shot.state == ShotState.RUNNING]
        if not running:
            return shots
        tune = await self._store.get_tune(shoot.tune_id)
        tune_id = tune.backend_id if tune and tune.backend_id else 0
        listed = await self._tracker._with_backoff(
            SHOOT, shoot.id, lambda: self._backend.list_prompts(tune_id)
        )
        by_id = {prompt.id: prompt for prompt in listed}
        for shot in running:
            remote = by_id.get(shot.backend_id)
            if remote is None:  # past the list's first page
                remote = await self._tracker._with_backoff(
                    SHOOT, shoot.id, lambda s=shot: self._backend.get_prompt(s.backend_id, tune_id)
                )
            await self._apply(shoot, shot, remote)
        return await self.shoots.shots(shoot.id)

    async def _apply(self, shoot: ShootRecord, shot: Shot, remote: Prompt) -> None:
        if remote.failed:
            await self.shoots.update_shot(shot.id, state=ShotState.FAILED)
        elif remote.done:
            folder = self._store.shoot_folder(shoot.id)
            files = await self._tracker._download(SHOOT, shoot.id, remote.images, folder, shot.id)
            await self.shoots.update_shot(shot.id, state=ShotState.DONE, result_files=files)

    async def _deliver_ready(
        self, shoot: ShootRecord, delivery: Delivery, shots: list[Shot]
    ) -> Delivery:
        """Send the shots that are done and not sent yet; then the progress."""
        notifier = self._notifier(delivery)
        ready = [s for s in shots if s.state == ShotState.DONE and not s.delivered]
        if ready and notifier is not None:
            with self._tracker._delivering_phase(SHOOT, shoot.id):
                numbers = {shot.id: number for number, shot in enumerate(shots, start=1)}
                ready_files = [self._files(shot, numbers[shot.id]) for shot in ready]
                await notifier.send_shots(delivery, shoot, ready_files)
                await self.shoots.mark_delivered([shot.id for shot in ready])
                await self.capture_delivered(shoot.id)
            shots = await self.shoots.shots(shoot.id)
        return await self._tracker._status(delivery, progress_text(shoot, _sent(shots)))

    def _files(self, shot: Shot, number: int) -> ShotFiles:
        paths = tuple(self._store.data_dir / name for name in shot.result_files)
        return ShotFiles(shot, number, paths)

    def _notifier(self, delivery: Delivery) -> ShootNotifier | None:
        notifier: ShootNotifier | None = self._tracker._notifiers.get(delivery.platform)  # type: ignore[assignment]
        return notifier

    async def _finish(self, shoot: ShootRecord, delivery: Delivery, *, zip_it: bool) -> None:
        """The ZIP (`zip_it`: not when a restart finds the shoot done, so it was sent), the
        state, the closing message, and the holds of what never came given back. A stop
        between the ZIP and the state sends the ZIP again; one after it, only the closing."""
        notifier = self._notifier(delivery)
        if notifier is None or shoot.state not in (*ENDED, ShootState.RUNNING):
            return
        await self._tracker._speak_to(shoot.user_id)
        shots = await self.shoots.shots(shoot.id)
        sent = _sent(shots)
        files = [
            self._store.data_dir / name for s in shots if s.delivered for name in s.result_files
        ]
        if files and zip_it:
            folder = self._store.shoot_folder(shoot.id)
            parts = await asyncio.to_thread(
                archives.write_parts,
                files,
                folder,
                f"shoot-{shoot.id}",
                notifier.archive_limit_bytes(delivery),
            )
            await notifier.send_archive(delivery, shoot, parts)
        await self.capture_delivered(shoot.id)  # before the end state lets anything go
        if shoot.state == ShootState.RUNNING:
            state = ShootState.DONE if sent else ShootState.FAILED
            shoot = await self.shoots.update(shoot.id, state=state)
        released = await self.release_rest(shoot.id)
        delivery = await self._tracker._status(delivery, progress_text(shoot, sent), force=True)
        if shoot.state == ShootState.DONE:
            closing = text("shoot.done", title=shoot.pack_title, count=sent)
        else:
            reason = shoot.error or text("error.unknown_reason")
            closing = text("shoot.failed", title=shoot.pack_title, reason=reason)
        await self._tracker._final_text(delivery, closing + _released(released))
        log.info(
            "shoot %s finished as %s, %d images",
            shoot.id,
            shoot.state,
            sent,
            extra=job_context(SHOOT, shoot.id, user=shoot.user_id),
        )

    async def capture_delivered(self, shoot_id: int) -> None:
        """Capture one hold per delivered image that has none captured yet. Counted from the
        rows, not remembered: a stop between marking shots delivered and capturing is caught
        up by the next call (the restart's), and a repeated poll or callback captures nothing
        twice. Never more than the shoot held (an image beyond the pack's size is free)."""
        held, captured = await self.shoots.holds(shoot_id)
        owed = min(_sent(await self.shoots.shots(shoot_id)), held) - captured
        for _ in range(owed):
            await self._tracker._settle(SHOOT, shoot_id, capture=True)

    async def release_rest(self, shoot_id: int) -> int:
        """Give back the holds of images that never came; returns the credits."""
        released = 0
        while given := await self._tracker._settle(SHOOT, shoot_id, capture=False):
            released += given
        return released

    # -- cancel ------------------------------------------------------------------------------

    async def cancel(self, shoot_id: int) -> tuple[int, int]:
        """Stop a shoot: its prompts not done yet are deleted on the backend, what was done is
        kept (and was delivered). Returns (images delivered, images asked for).

        Images being sent right now are let through first (as `stop` does): cut off, they
        would reach the chat without being counted, and their holds would be given back."""
        waited = 0.0
        while (SHOOT, shoot_id) in self._tracker._delivering and waited < DELIVERY_GRACE_S:
            await asyncio.sleep(DELIVERING_CHECK_S)
            waited += DELIVERING_CHECK_S
        await self._tracker.stop_job(SHOOT, shoot_id)
        shoot = await self.shoots.get(shoot_id)
        if shoot is None:
            return 0, 0
        try:
            await self.delete_remote(shoot_id)
        except BackendError as exc:
            log.warning("cancelled shoot %s not deleted on the backend: %s", shoot_id, exc)
        await self.capture_delivered(shoot_id)  # before the end state lets anything go
        await self.shoots.update(shoot_id, state=ShootState.CANCELLED)
        await self.release_rest(shoot_id)
        delivery = await self._store.get_delivery(SHOOT, shoot_id)
        if delivery is not None:
            await self._store.mark_delivered(delivery.id)
        return _sent(await self.shoots.shots(shoot_id)), shoot.num_images

    async def delete_remote(self, shoot_id: int, *, finished_too: bool = False) -> None:
        """Delete the shoot's unfinished prompts on the backend (gone already is fine), also
        those of a pack run whose answer was never recorded (stopped while submitting); with
        `finished_too` (/delete) the finished ones as well, images and all: hosted Astria
        keeps a LoRA tune's prompts when the tune is deleted. A backend failure raises
        (BackendError): /delete then keeps everything here."""
        shoot = await self.shoots.get(shoot_id)
        if shoot is not None and shoot.state == ShootState.SUBMITTING:
            tune = await self._store.get_tune(shoot.tune_id)
            if tune is not None and tune.backend_id is not None:
                async with self._adoption(tune.backend_id, shoot):  # not another's run
                    for prompt in await self._unowned_prompts(shoot, tune.backend_id):
                        await self._delete_prompt(prompt.id)
        for shot in await self.shoots.shots(shoot_id):
            if shot.state == ShotState.RUNNING:
                await self._delete_prompt(shot.backend_id)
                await self.shoots.update_shot(shot.id, state=ShotState.CANCELLED)
            elif finished_too:
                await self._delete_prompt(shot.backend_id)

    async def _delete_prompt(self, prompt_id: int) -> None:
        with contextlib.suppress(NotFoundError):  # gone already
            await self._backend.delete_prompt(prompt_id)


def _sent(shots: Sequence[Shot]) -> int:
    """Images that reached the chat."""
    return sum(len(shot.result_files) for shot in shots if shot.delivered)


def _num_images(prompt: Prompt) -> int:
    value = prompt.raw.get("num_images")
    return value if isinstance(value, int) and value > 0 else 1


def _released(credits: int) -> str:
    return " " + text("credits.released", count=credits) if credits else ""
