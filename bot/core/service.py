"""The use cases every frontend calls: add photos, train, imagine, list, status, cancel, delete.

Frontends parse chat input and render results; everything that decides something lives here,
so Telegram, Discord and the console behave the same. Methods raise `UserError` (see
`bot.core.errors`) with a message meant for the chat when the user asked for something that
cannot be done. Frontends reach the store only through here: users, jobs and the buttons they
show (a button is a stored action, see `new_action`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import DEFAULT_TOKEN, Backend, BackendError, TrainingImage
from backends.photo_quality import PhotoQuality
from bot.core import photo_process, shoots
from bot.core import photos as photo_intake
from bot.core.consent import ConsentNeeded, consent_question
from bot.core.credits import Credits, CreditsConfig, Quote, amount
from bot.core.errors import UserError
from bot.core.inspection import IntakeClass, Verdict, inspect_for_intake, intake_class
from bot.core.jobs import JobTracker
from bot.core.ledger import Ledger
from bot.core.photo_set import set_advice
from bot.core.prompts import ComposedPrompt, TuneRef, compose_prompt
from bot.core.records import (
    Action,
    ActionKind,
    ChatTarget,
    Delivery,
    GenerationRecord,
    GenerationState,
    JobKind,
    ShootRecord,
    TuneRecord,
    TuneState,
    User,
)
from bot.core.retention import Retention, RetentionConfig
from bot.core.safety import BlockList
from bot.core.shoot_desk import ShootDesk, ShootStarted
from bot.core.store import Store
from bot.core.texts import languages, text

log = logging.getLogger(__name__)

CLASS_NAMES = ("man", "woman", "boy", "girl", "person", "child", "baby", "dog", "cat", "couple")
MAX_LABEL_CHARS = 40
AUTOMATIC_LANGUAGE = ("auto", "automatic")
"""What `/language` takes (beside a language) to follow the platform's language again."""


def _everyone(user_key: str) -> bool:
    return True


def _nobody(user_key: str) -> bool:
    return False


@dataclass(frozen=True)
class ServiceConfig:
    lora_strength: float = 0.8
    num_images: int = 4
    super_resolution: bool = True
    inpaint_faces: bool = True
    is_allowed: Callable[[str], bool] = _everyone
    """Who may use the bot, by `platform:id` (the wiring passes `Settings.is_allowed`)."""
    is_banned: Callable[[str], bool] = _nobody
    """Who an admin banned, by `platform:id` (bot.core.admin.Bans)."""
    default_language: str = languages.SOURCE_LANGUAGE
    """DEFAULT_LANGUAGE: for users whose platform language the bot does not speak."""
    blocklist: BlockList = field(default_factory=BlockList.load)
    """PROMPT_BLOCKLIST's rules (safety.py): refused before anything is stored or sent."""
    consent_required: bool = True
    """CONSENT_REQUIRED: ask the one-time consent question before a user's first /train."""
    consent_text: str | None = None
    """CONSENT_TEXT_FILE's wording; None: the catalogs' `consent.question`."""


@dataclass(frozen=True)
class IncomingPhoto:
    """One photo as a frontend received it: bytes (never a URL) and the name it came with."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class GenerationStarted:
    generation: GenerationRecord
    delivery: Delivery
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Preview:
    """What a prompt would make, and its price: plain text in a private chat spends nothing
    until the user confirms (a stray "clear" once made four images)."""

    prompt: str
    model: str
    images: int
    quote: Quote | None
    """None when the user is not charged."""
    notes: tuple[str, ...]

    @property
    def text(self) -> str:
        question = text("imagine.preview", count=self.images, prompt=self.prompt, model=self.model)
        if self.quote is None:
            return question
        price = text(
            "imagine.preview_price",
            price=amount(self.quote.price),
            balance=amount(self.quote.balance),
        )
        return f"{question} {price}"

    @property
    def button(self) -> str:
        """The label of the button that makes it."""
        if self.quote is None:
            return text("button.make_it")
        return text("button.make_it_for", price=amount(self.quote.price))


@dataclass(frozen=True)
class StatusReport:
    pending_photos: int
    tunes: list[TuneRecord]
    generations: list[tuple[GenerationRecord, int]]
    active_tune_id: int | None
    shoots: list[str] = field(default_factory=list)
    """One line per unfinished shoot (its progress, or what it waits for)."""

    @property
    def text(self) -> str:
        lines = [text("status.pending_photos", count=self.pending_photos)]
        running_tunes = [tune for tune in self.tunes if tune.state.unfinished]
        for tune in running_tunes:
            if tune.eta:
                lines.append(text("status.training_until", model=tune.display_name, eta=tune.eta))
            else:
                lines.append(text("status.training", model=tune.display_name))
        for generation, position in self.generations:
            key = "status.image_waiting" if position else "status.image_next"
            lines.append(
                text(key, id=generation.id, prompt=generation.prompt_typed, count=position)
            )
        lines += self.shoots
        if not running_tunes and not self.generations and not self.shoots:
            lines.append(text("status.idle"))
        active = next((t for t in self.tunes if t.id == self.active_tune_id), None)
        if active is not None:
            lines.append(text("status.active_model", model=active.display_name))
        return "\n".join(lines)


class PhotoshootService:
    """See the module docstring. One instance serves every frontend."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        tracker: JobTracker,
        config: ServiceConfig,
        credits: Credits | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.store = store
        self.retention = retention or Retention(store, backend, RetentionConfig())
        """Visits and the retention sweep's notices (bot/core/retention.py)."""
        self._backend = backend
        self._tracker = tracker
        self._config = config
        self.credits = credits or Credits(Ledger(store), CreditsConfig())
        """Who is charged what (bot.core.credits); off unless the wiring turns it on."""
        self._user_locks = self.retention.user_locks  # its sweep takes them too
        self._shoots = ShootDesk(self, tracker.shoots)

    async def user(
        self,
        platform: str,
        platform_user_id: str,
        name: str | None = None,
        language: str | None = None,
    ) -> User:
        """The user behind a chat account; refuses accounts that ALLOWED_IDS leaves out, and
        banned ones.

        `language` is the tag the platform sent with this update (None: it sent none); it is
        kept, so news sent later (a finished training) speaks the same language."""
        key = f"{platform}:{platform_user_id}"
        if not self._config.is_allowed(key):
            raise UserError(text("access.private"))
        if self._config.is_banned(key):
            raise UserError(text("access.banned"))
        user = await self.store.get_or_create_user(platform, platform_user_id, name, language)
        await self.retention.seen(user)
        return user

    async def retention_notice(self, platform: str, platform_user_id: str) -> str | None:
        """What the retention sweep removed while the user was away, told once (issue 15);
        frontends ask on every update of a private chat (a group must not read it)."""
        user = await self.store.find_user(platform, platform_user_id)
        return None if user is None else await self.retention.take_notice(user.id)

    @property
    def default_language(self) -> str:
        """DEFAULT_LANGUAGE, as a language the bot speaks."""
        return self._config.default_language

    def language(self, user: User) -> str:
        """The language to speak with `user`: chosen, else the platform's, else the default."""
        return languages.pick(user.language, user.platform_language, self._config.default_language)

    async def speak_to(
        self, platform: str, platform_user_id: str, language: str | None = None
    ) -> None:
        """Speak the language of an update's sender for the rest of that update (its asyncio
        task): their /language choice, else the `language` their platform sent with it, else
        the one it sent last, else the default. Nothing is created for a stranger (a group
        member who never used the bot); a known user's new platform language is kept, so
        news sent later (a finished training) speaks it."""
        user = await self.store.find_user(platform, platform_user_id)
        if user is not None and language not in (None, user.platform_language):
            user = await self.store.get_or_create_user(platform, platform_user_id, None, language)
        chosen, stored = (user.language, user.platform_language) if user else (None, None)
        default = self._config.default_language
        languages.set_language(languages.pick(chosen, language or stored, default))

    async def user_by_id(self, user_id: int) -> User | None:
        """A user as stored (frontends that deliver to them need their chat account)."""
        return await self.store.get_user(user_id)

    async def tune_owner(self, tune_id: int) -> User | None:
        tune = await self.store.get_tune(tune_id)
        return None if tune is None else await self.store.get_user(tune.user_id)

    def _lock(self, user: User) -> asyncio.Lock:
        """One operation per user at a time: album photos arrive concurrently."""
        return self._user_locks.setdefault(user.id, asyncio.Lock())

    # -- photos ------------------------------------------------------------------------------

    async def add_photos(
        self, user: User, incoming: Sequence[IncomingPhoto]
    ) -> photo_intake.IntakeBatch:
        """Check and store photos into the user's pending set; the batch says what happened."""
        async with self._lock(user):
            existing = await self.store.pending_photos(user.id)
            batch = photo_intake.IntakeBatch(
                existing_hashes={photo.sha256 for photo in existing}, existing_count=len(existing)
            )
            inspect_as = intake_class(await self.store.user_tunes(user.id))
            hashes = [photo.phash for photo in existing if photo.phash]  # the set so far
            for item in incoming:
                try:
                    outcome = await photo_process.run(
                        photo_intake.prepare_and_measure,
                        item.data,
                        item.filename,
                        languages.current_language(),
                    )
                except photo_process.ProcessDied:
                    log.warning("a photo killed the photo process twice: refused as damaged")
                    outcome = photo_intake.corrupt(item.filename)
                prepared = batch.take(outcome, item.filename)
                if prepared is None:
                    continue
                verdict = await self._inspected(
                    batch, prepared, item.filename, inspect_as, hashes, outcome.quality
                )
                if verdict is not None:
                    await self._save_photo(user, prepared, verdict)
            return batch

    async def _inspected(
        self,
        batch: photo_intake.IntakeBatch,
        photo: photo_intake.PreparedPhoto,
        filename: str | None,
        inspect_as: IntakeClass,
        hashes: list[str],
        measured: PhotoQuality | None,
    ) -> Verdict | None:
        """Issue 15: the backend's inspection of an accepted photo; None when it refused it
        (withdrawn from the batch with its reason), else its warnings join the batch's notes."""
        image = TrainingImage(photo.filename, photo.data)
        subject = photo_intake.photo_subject(filename)
        verdict = await inspect_for_intake(
            self._backend, inspect_as, image, subject, hashes, measured
        )
        if verdict.refusal is not None:
            batch.withdraw(photo, verdict.refusal, filename)
            return None
        batch.notes.extend(verdict.warnings)
        if verdict.phash:
            hashes.append(verdict.phash)
        return verdict

    async def _save_photo(
        self, user: User, prepared: photo_intake.PreparedPhoto, verdict: Verdict
    ) -> None:
        relative = f"photos/{user.id}/{prepared.sha256}.jpg"
        path = self.store.data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, prepared.data)
        await self.store.add_photo(
            user.id,
            sha256=prepared.sha256,
            width=prepared.width,
            height=prepared.height,
            size_bytes=len(prepared.data),
            path=relative,
            phash=verdict.phash,
            attributes=verdict.attributes,
        )

    async def pending_photo_count(self, user: User) -> int:
        return len(await self.store.pending_photos(user.id))

    # -- languages ---------------------------------------------------------------------------

    def language_report(self, user: User) -> str:
        """`/language` with no choice: what is spoken now, why, and how to change it."""
        if languages.match(user.language):
            reason = "language.reason.chosen"
        elif languages.match(user.platform_language):
            reason = "language.reason.platform"
        else:
            reason = "language.reason.default"
        current = text(
            "language.current", language=languages.name(self.language(user)), reason=text(reason)
        )
        usage = text("language.usage", codes=", ".join(languages.languages()))
        return f"{current}\n{usage}"

    async def choose_language(self, user: User, wanted: str) -> str:
        """`/language <code or name>`, or `auto`: stored, and spoken from this answer on."""
        wanted = wanted.strip()
        if wanted.lower() in AUTOMATIC_LANGUAGE:
            chosen = None
        else:
            chosen = languages.match(wanted) or _language_by_name(wanted)
            if chosen is None:
                spoken = ", ".join(languages.name(code) for code in languages.languages())
                raise UserError(text("language.unknown", wanted=wanted, languages=spoken))
        await self.store.set_language(user.id, chosen)
        user = await self.store.get_user(user.id) or user
        languages.set_language(self.language(user))
        key = "language.now" if chosen else "language.now_automatic"
        return text(key, language=languages.name(self.language(user)))

    # -- training ----------------------------------------------------------------------------

    async def start_training(
        self, user: User, class_name: str, target: ChatTarget, label: str | None = None
    ) -> TuneRecord:
        """Turn the pending photos into a tune; the tracker uploads it and reports progress.
        A label that starts with a pack's slug (`/train man travel`) also runs that pack on
        the model, in one go (bot/core/shoot_desk.py)."""
        class_name = _class_word(class_name.strip().lower())
        if not class_name:
            raise UserError(text("train.no_class", classes=", ".join(CLASS_NAMES)))
        if not class_name.isalpha() or len(class_name) > 20:
            examples = ", ".join(CLASS_NAMES[:5])
            raise UserError(text("train.not_a_class", word=class_name, examples=examples))
        if not target.is_private:
            raise UserError(text("train.private_only"))
        await self._require_consent(user)  # issue 15: no training without it
        pack, label = await self._shoots.training_pack(class_name, label)
        also = self.credits.for_training(user)
        shot: list[ShootRecord] = []
        if pack is not None:
            also, shot = self._shoots.with_training(user, pack, class_name, target, also)
        async with self._lock(user):
            pending = await self.store.pending_photos(user.id)
            photo_intake.check_ready_to_train(len(pending))
            tunes = await self.store.user_tunes(user.id)
            if any(t.state == TuneState.CREATING for t in tunes):
                raise UserError(text("train.uploading_already"))
            tune = await self.store.create_tune(
                user.id,
                title=str(uuid.uuid4()),
                class_name=class_name,
                token=DEFAULT_TOKEN,
                label=(label or "").strip()[:MAX_LABEL_CHARS] or None,
                photo_ids=[photo.id for photo in pending],
                target=target,
                also=also,
            )
        log.info("user %s started tune %s with %d photos", user.id, tune.id, len(pending))
        self._tracker.track_tune(tune.id)
        for shoot in shot:
            self._tracker.track_shoot(shoot.id)
        return dataclasses.replace(tune, advice=set_advice(pending))  # issue 15: a weak set

    # -- consent (issue 15, consent.py) -------------------------------------------------------

    async def consent_needed(self, user: User) -> str | None:
        """The consent question when `user` must still answer it (before /train), else None."""
        fresh = await self.store.get_user(user.id)
        if not self._config.consent_required or (fresh and fresh.consented_at):
            return None
        return consent_question(self._config.consent_text)

    async def _require_consent(self, user: User) -> None:
        if (question := await self.consent_needed(user)) is not None:
            raise ConsentNeeded(question)

    async def give_consent(self, user: User) -> str:
        """Record the user's confirmation (once; its time is kept) and say what comes next."""
        await self.store.record_consent(user.id)
        log.info("user %s gave consent", user.id)
        return text("consent.given")

    # -- generation --------------------------------------------------------------------------

    async def generate(
        self,
        user: User,
        prompt: str,
        target: ChatTarget,
        *,
        seed: int | None = None,
        num_images: int | None = None,
        upscale: bool = False,
        tune_id: int | None = None,
    ) -> GenerationStarted:
        """Compose the prompt with the user's own model and queue it; `upscale` turns every
        quality pass on (super-resolution, face inpainting, hires fix). `tune_id` is the
        model to use when the text names none (default: the active one).

        Under the user's lock: a /delete running meanwhile either sees this job (and deletes
        it here and on the image service) or finishes first (and this finds no model)."""
        self._config.blocklist.check(prompt)  # issue 15: before any row, hold or request
        async with self._lock(user):
            return await self._generate(user, prompt, target, seed, num_images, upscale, tune_id)

    async def _generate(
        self,
        user: User,
        prompt: str,
        target: ChatTarget,
        seed: int | None,
        num_images: int | None,
        upscale: bool,
        tune_id: int | None,
    ) -> GenerationStarted:
        composed, tune = await self._compose(user, prompt, tune_id)
        images = num_images or self._config.num_images
        options = {
            "num_images": images,
            "super_resolution": self._config.super_resolution,
            "inpaint_faces": self._config.inpaint_faces and self._config.super_resolution,
        }
        if upscale:
            options.update(super_resolution=True, inpaint_faces=True, hires_fix=True)
        generation, delivery = await self.store.create_generation(
            user.id,
            tune_id=tune.id,
            prompt_typed=composed.user_text,
            prompt_sent=composed.text,
            negative_prompt=composed.negative_prompt,
            options=options,
            seed=seed if seed is not None else random.randrange(2**32),
            target=target,
            also=self.credits.for_generation(user, images),
        )
        self._tracker.track_generation(generation, delivery)
        return GenerationStarted(generation, delivery, composed.notes)

    async def _compose(
        self, user: User, prompt: str, tune_id: int | None
    ) -> tuple[ComposedPrompt, TuneRecord]:
        """The prompt composed with one of the user's trained models, and that model."""
        tunes = await self.store.user_tunes(user.id)
        trained = {t.backend_id: t for t in tunes if t.state == TuneState.TRAINED and t.backend_id}
        if not trained:
            if any(t.state.unfinished for t in tunes):
                raise UserError(text("imagine.still_training"))
            raise UserError(text("imagine.no_model"))
        wanted = tune_id or user.active_tune_id
        active = next((t for t in trained.values() if t.id == wanted), None)
        if active is None:
            active = max(trained.values(), key=lambda t: t.id)
        composed = compose_prompt(
            prompt,
            active=_tune_ref(active),
            owned={backend_id: _tune_ref(t) for backend_id, t in trained.items()},
            default_strength=self._config.lora_strength,
        )
        return composed, trained[composed.tune_id]

    async def preview(self, user: User, prompt: str) -> Preview:
        """What `generate` would make of the prompt, and its price; nothing is recorded."""
        user = await self.store.get_user(user.id) or user  # the active model may have changed
        composed, tune = await self._compose(user, prompt, None)
        images = self._config.num_images
        quote = await self.credits.quote(user, self.credits.config.prices.generation(images))
        return Preview(composed.user_text, tune.display_name, images, quote, composed.notes)

    async def account(self, user: User) -> str:
        """What /credits shows: the balance, the prices and the last movements."""
        return await self.credits.summary(user, set_size=self._config.num_images)

    async def reroll(self, user: User, generation_id: int, target: ChatTarget) -> GenerationStarted:
        """The same prompt again, with the same model and a new seed."""
        original = await self._own_generation(user, generation_id)
        return await self.generate(user, original.prompt_typed, target, tune_id=original.tune_id)

    async def _own_generation(self, user: User, generation_id: int) -> GenerationRecord:
        generation = await self.store.get_generation(generation_id)
        if generation is None or generation.user_id != user.id:
            raise UserError(text("images.not_yours"))
        return generation

    # -- models ------------------------------------------------------------------------------

    async def list_models(self, user: User) -> list[TuneRecord]:
        return await self.store.user_tunes(user.id)

    async def choose_model(self, user: User, tune_id: int) -> TuneRecord:
        """Make one of the user's trained tunes the active one (by our id or the backend's)."""
        for tune in await self.store.user_tunes(user.id):
            if tune_id in (tune.id, tune.backend_id):
                if tune.state != TuneState.TRAINED:
                    raise UserError(
                        text("models.not_trained", model=tune.display_name, state=tune.state)
                    )
                await self.store.set_active_tune(user.id, tune.id)
                return tune
        raise UserError(text("models.no_such_number"))

    # -- status, cancel, delete --------------------------------------------------------------

    async def status(self, user: User) -> StatusReport:
        user = await self.store.get_user(user.id) or user
        generations = await self.store.queued_generations(user.id)
        return StatusReport(
            pending_photos=await self.pending_photo_count(user),
            tunes=await self.store.user_tunes(user.id),
            generations=generations,
            active_tune_id=user.active_tune_id,
            shoots=await self._shoots.status_lines(user.id),
        )

    async def cancel(self, user: User) -> str:
        """Cancel unfinished generations and trainings; with none running, drop pending photos."""
        cancelled = await self.cancel_jobs(user)
        if cancelled:
            return text("cancel.done", jobs=", ".join(cancelled))
        dropped = await self.store.delete_pending_photos(user.id)
        await asyncio.to_thread(self.store.remove_media, [photo.path for photo in dropped])
        if dropped:
            return text("cancel.dropped_photos", count=len(dropped))
        return text("cancel.nothing")

    async def cancel_jobs(self, user: User) -> list[str]:
        """Cancel the user's unfinished jobs (their holds come back); what was cancelled."""
        cancelled: list[str] = []
        for generation in await self.store.user_generations(user.id):
            if generation.state.unfinished:
                await self._tracker.cancel(JobKind.GENERATION, generation.id)
                cancelled.append(text("cancel.image", id=generation.id))
        cancelled += await self._shoots.cancel_all(user)
        for tune in await self.store.user_tunes(user.id):
            if tune.state.unfinished:
                await self._tracker.cancel(JobKind.TUNE, tune.id)
                cancelled.append(text("cancel.training", model=tune.display_name))
        return cancelled

    async def delete_everything(self, user: User) -> str:
        """Delete the user's photos, models and images, here and on the backend.

        Remote deletion comes first; if the backend fails, nothing is deleted here, so the
        user can simply ask again (already deleted items then count as gone).
        """
        async with self._lock(user):
            tunes = await self.store.user_tunes(user.id)
            generations = await self.store.user_generations(user.id)
            jobs = [(JobKind.GENERATION, g.id) for g in generations]
            shoot_ids = [shoot.id for shoot in await self._tracker.shoots.shoots.of_user(user.id)]
            jobs += [(JobKind.SHOOT, shoot_id) for shoot_id in shoot_ids]
            jobs += [(JobKind.TUNE, t.id) for t in tunes]
            for kind, job_id in jobs:
                await self._tracker.stop_job(kind, job_id)
            failures = 0
            for kind, job_id in jobs:
                try:
                    await self._tracker.delete_remote(kind, job_id)
                except BackendError as exc:
                    failures += 1
                    log.warning("deleting %s %s on the backend failed: %s", kind, job_id, exc)
            if failures:
                await self._tracker.start()  # resume what was stopped above
                raise UserError(text("delete.kept", count=failures))
            photos = await self.store.user_photos(user.id)
            await self.store.delete_user_data(user.id, also=self.credits.releasing_all(user))
            await asyncio.to_thread(
                self.store.remove_media,
                [photo.path for photo in photos],
                [generation.id for generation in generations],
                shoot_ids,
            )
        return text("delete.done", photos=len(photos), models=len(tunes), jobs=len(generations))

    # -- chat buttons (state in the store, so they work after a restart) ---------------------

    async def new_action(
        self,
        user_id: int,
        kind: ActionKind,
        *,
        generation_id: int | None = None,
        argument: str | None = None,
    ) -> str:
        """Store what a new button will do, for `user_id` alone; returns the token the button
        carries (short: it fits Telegram's 64-byte callback data)."""
        action = await self.store.create_action(
            user_id, kind, generation_id=generation_id, argument=argument
        )
        return action.token

    async def own_action(self, user: User, token: str) -> Action:
        """The button behind `token`, if `user` may press it: buttons act for their requester."""
        action = await self.store.get_action(token)
        if action is None:
            raise UserError(text("button.gone"))
        if action.user_id != user.id:
            raise UserError(text("button.not_yours"))
        return action

    async def variation(
        self, user: User, generation_id: int, index: int, target: ChatTarget
    ) -> GenerationStarted:
        """More like image #index: the same typed prompt, starting from that image's seed.

        Backends give image n of a set the seed `seed + n - 1`, so the new set starts there.
        """
        original = await self._own_generation(user, generation_id)
        seed = _image_seed(original, index)
        return await self.generate(
            user, original.prompt_typed, target, seed=seed, tune_id=original.tune_id
        )

    async def upscale(
        self, user: User, generation_id: int, index: int, target: ChatTarget
    ) -> GenerationStarted:
        """Image #index alone again, with every quality pass on: the same prompt and seed
        give the same picture, the passes add resolution and detail."""
        original = await self._own_generation(user, generation_id)
        seed = _image_seed(original, index)
        return await self.generate(
            user,
            original.prompt_typed,
            target,
            seed=seed,
            num_images=1,
            upscale=True,
            tune_id=original.tune_id,
        )

    async def result_files(self, user: User, generation_id: int) -> list[Path]:
        """The finished images of one of the user's generations, as stored (full resolution)."""
        generation = await self._own_generation(user, generation_id)
        paths = [self.store.data_dir / name for name in generation.result_files]
        if generation.state != GenerationState.DONE or not paths:
            raise UserError(text("images.not_ready"))
        if not all(path.exists() for path in paths):
            raise UserError(text("images.deleted"))
        return paths

    # -- packs (bot/core/shoots.py) --------------------------------------------------------

    async def list_packs(self, user: User) -> str:
        """`/packs`: the packs for the class of the user's model, with size and price."""
        model = shoots.pack_model(await self.store.user_tunes(user.id), user.active_tune_id)
        return shoots.offers_text(await shoots.offers(self._backend, model), model)

    async def pick_pack(self, user: User, wanted: str) -> shoots.PackOffer:
        """A pick from `/packs` (its number, slug or id): the pack, for the confirm button."""
        user = await self.store.get_user(user.id) or user
        model = shoots.pack_model(await self.store.user_tunes(user.id), user.active_tune_id)
        return await shoots.pick(self._backend, model, wanted)

    async def pack_offers(self, user: User) -> tuple[TuneRecord, list[shoots.PackOffer]]:
        """The model packs are offered for, and the offers (for a picker's buttons)."""
        user = await self.store.get_user(user.id) or user
        model = shoots.pack_model(await self.store.user_tunes(user.id), user.active_tune_id)
        return model, await shoots.offers(self._backend, model)

    async def start_shoot(self, user: User, wanted: str, target: ChatTarget) -> ShootStarted:
        """`/shoot <pack>` (bot/core/shoot_desk.py): what is being made, or why not."""
        return await self._shoots.start(user, wanted, target)

    async def like_shot(self, user: User, shot_id: int) -> bool:
        """The heart under a shoot's image: a like on the backend; pressed again, unliked.
        Returns whether the shot is liked now."""
        return await self._shoots.like(user, shot_id)

    async def more_like_shot(
        self, user: User, shot_id: int, target: ChatTarget
    ) -> GenerationStarted:
        """A new image set from one shot's prompt text, on the shoot's model."""
        shot_text, tune_id = await self._shoots.shot_prompt(user, shot_id)
        return await self.generate(user, shot_text, target, tune_id=tune_id)


def _class_word(typed: str) -> str:
    """The English class word SDXL knows for what was typed: the word itself, or a class's
    name in the user's language (`/train мужчина` trains a "man")."""
    return next((name for name in CLASS_NAMES if typed == text(f"class.{name}").lower()), typed)


def _language_by_name(wanted: str) -> str | None:
    """A language given by its own name ("Deutsch"), as `/language` lists them."""
    wanted = wanted.casefold()
    return next(
        (code for code in languages.languages() if languages.name(code).casefold() == wanted),
        None,
    )


def _image_seed(generation: GenerationRecord, index: int) -> int:
    """The seed of image #index of a set (backends give image n the seed `seed + n - 1`)."""
    if not 1 <= index <= max(1, len(generation.result_files)):
        raise UserError(text("images.no_such_number", number=index))
    return (generation.seed + index - 1) % 2**32


def _tune_ref(tune: TuneRecord) -> TuneRef:
    return TuneRef(
        backend_id=tune.backend_id or 0,
        token=tune.token,
        class_name=tune.class_name,
        title=tune.label,
    )
