"""The use cases of shoots (issue 14), for PhotoshootService: start one, like a shot, use a
shot for "more like this", and what /status and /cancel say about shoots.

A shoot is checked before anything is held or sent: the pack must exist and fit the model's
class (bot/core/shoots.py says which do), its prompt texts must pass the operator's block list
(where the backend shows them: our worker does, Astria's gallery packs do not), and the user
must have the credits for every image. A model still training queues the shoot: it is
recorded now and starts when the training ends (bot/core/shoot_jobs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

from backends.base import BackendError, Pack
from bot.core import shoots
from bot.core.errors import UserError, backend_problem
from bot.core.records import ChatTarget, ShootRecord, ShootState, Shot, TuneState, User
from bot.core.shoot_jobs import ShootDriver, progress_text
from bot.core.shoot_store import NewShoot
from bot.core.store import Also
from bot.core.texts import text

if TYPE_CHECKING:
    from bot.core.service import PhotoshootService


@dataclass(frozen=True)
class ShootStarted:
    shoot: ShootRecord
    text: str
    """What is being made (or that it waits for the model's training)."""


class ShootDesk:
    """See the module docstring; one per service."""

    def __init__(self, service: PhotoshootService, driver: ShootDriver) -> None:
        self._service = service
        self._driver = driver
        self._shoots = driver.shoots

    async def start(self, user: User, wanted: str, target: ChatTarget) -> ShootStarted:
        """Record a shoot of the pack `wanted` names on the user's model, and say what it
        makes."""
        if not wanted.strip():
            raise UserError(text("shoot.usage"))
        service = self._service
        offer = await service.pick_pack(user, wanted)
        model = offer.model
        await self._check_prompts(offer.pack, model.class_name)  # before any row or hold
        if offer.num_images <= 0:
            raise UserError(text("packs.none_for_class", class_name=model.class_name))
        trained = model.state == TuneState.TRAINED
        async with service._lock(user):
            new = NewShoot(
                user.id,
                tune_id=model.id,
                pack_id=offer.pack.id,
                pack_title=offer.title,
                num_images=offer.num_images,
                state=ShootState.SUBMITTING if trained else ShootState.WAITING,
                target=target,
            )
            shoot, _ = await self._shoots.create(
                new, service.credits.for_shoot(user, offer.num_images)
            )
        service._tracker.track_shoot(shoot.id)
        key = "shoot.started" if trained else "shoot.queued"
        said = text(key, title=shoot.pack_title, count=shoot.num_images, model=model.display_name)
        return ShootStarted(shoot, said)

    # -- train and shoot in one go -----------------------------------------------------------

    async def training_pack(
        self, class_name: str, label: str | None
    ) -> tuple[Pack | None, str | None]:
        """`/train man travel`: when the label's first word is the slug of a pack for the
        class, that pack runs on the new model (the rest is the label). Anything else, or a
        backend that cannot list packs now, leaves the label as it was."""
        word, _, rest = (label or "").strip().partition(" ")
        if not word:
            return None, label
        try:
            packs = await self._service._backend.list_packs()
        except BackendError:
            return None, label
        wanted = word.lstrip("#").lower()
        listed = next((p for p in packs if p.slug.lower() == wanted), None)
        if listed is None:
            return None, label
        pack = listed
        if listed.supports(class_name):
            pack = await shoots.with_size(self._service._backend, listed, class_name)
        if not pack.num_images(class_name):  # no prompts for the class: nothing to hold for
            fitting = ", ".join(
                shoots.pack_words(p, "title")
                for p in packs
                if p.supports(class_name) and p.id != listed.id
            )
            raise UserError(
                text(
                    "packs.unsupported",
                    title=shoots.pack_words(listed, "title"),
                    class_name=class_name,
                    packs=fitting or text("packs.unsupported_none"),
                )
            )
        await self._check_prompts(pack, class_name)
        return pack, rest.strip() or None

    async def _check_prompts(self, pack: Pack, class_name: str) -> None:
        """The operator's block list on the pack's prompt texts for the class, where the
        backend shows them (our worker does; Astria shows none). A listed pack without its
        prompts is fetched whole first."""
        if not pack.prompts_per_class.get(class_name):
            try:
                pack = await self._service._backend.get_pack(pack.id)
            except BackendError as exc:
                raise UserError(backend_problem(exc)) from exc
        for prompt in pack.prompts_per_class.get(class_name, ()):
            self._service._config.blocklist.check(prompt.text)

    def with_training(
        self, user: User, pack: Pack, class_name: str, target: ChatTarget, tune_hold: Also | None
    ) -> tuple[Also, list[ShootRecord]]:
        """What a train-and-shoot adds to the tune's transaction: the tune's hold, then the
        shoot with its own holds. The list receives the shoot once the transaction ran."""
        recorded: list[ShootRecord] = []
        images = pack.num_images(class_name) or 0

        async def also(db: aiosqlite.Connection, tune_id: int) -> None:
            if tune_hold is not None:
                await tune_hold(db, tune_id)
            new = NewShoot(
                user.id,
                tune_id=tune_id,
                pack_id=pack.id,
                pack_title=shoots.pack_words(pack, "title"),
                num_images=images,
                state=ShootState.TRAINING,
                target=target,
            )
            shoot, _ = await self._shoots.insert(
                db, new, self._service.credits.for_shoot(user, images)
            )
            recorded.append(shoot)

        return also, recorded

    async def status_lines(self, user_id: int) -> list[str]:
        lines = []
        for shoot in await self._shoots.of_user(user_id):
            if not shoot.state.unfinished:
                continue
            if shoot.state in (ShootState.WAITING, ShootState.TRAINING):
                tune = await self._service.store.get_tune(shoot.tune_id)
                model = tune.display_name if tune else ""
                lines.append(text("shoot.waiting", title=shoot.pack_title, model=model))
            else:
                shots = await self._shoots.shots(shoot.id)
                ready = sum(len(s.result_files) for s in shots if s.delivered)
                lines.append(progress_text(shoot, ready))
        return lines

    async def cancel_all(self, user: User) -> list[str]:
        """Cancel the user's unfinished shoots; one line per shoot, saying what is kept."""
        cancelled = []
        for shoot in await self._shoots.of_user(user.id):
            if shoot.state.unfinished:
                ready, count = await self._driver.cancel(shoot.id)
                cancelled.append(
                    text("cancel.shoot", title=shoot.pack_title, ready=ready, count=count)
                )
        return cancelled

    async def like(self, user: User, shot_id: int) -> bool:
        """Like a shot on the backend, or take the like back; whether it is liked now."""
        shot = await self._own_shot(user, shot_id)
        backend = self._service._backend
        try:
            if shot.liked:
                await backend.unlike_prompt(shot.backend_id)
            else:
                await backend.like_prompt(shot.backend_id)
        except BackendError as exc:
            raise UserError(backend_problem(exc)) from exc
        await self._shoots.update_shot(shot.id, liked=not shot.liked)
        return not shot.liked

    async def shot_prompt(self, user: User, shot_id: int) -> tuple[str, int]:
        """A shot's prompt text and the shoot's model, for "more like this"."""
        shot = await self._own_shot(user, shot_id)
        shoot = await self._shoots.get(shot.shoot_id)
        assert shoot is not None  # a shot's shoot is deleted with it
        return shot.text, shoot.tune_id

    async def _own_shot(self, user: User, shot_id: int) -> Shot:
        shot = await self._shoots.get_shot(shot_id)
        shoot = await self._shoots.get(shot.shoot_id) if shot else None
        if shot is None or shoot is None or shoot.user_id != user.id:
            raise UserError(text("shoot.not_yours"))
        return shot
